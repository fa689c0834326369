#include "cli/restore_command.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "server/server.h"

namespace conclave::cli {

namespace {

struct RestoreFlags {
  std::string file;
  std::string name = "default";
  std::string data_dir;
  std::string initial_cluster;
  std::string initial_cluster_token = "etcd-cluster";
  std::string initial_advertise_peer_urls = "http://localhost:2380";
  bool skip_hash_check = false;
};

int Restore(const RestoreFlags& f) {
  // The member's identity comes from the same flags `serve` reads, parsed by
  // the same code, so the restored directory and the server agree.
  std::vector<std::string> args = {"--name",
                                   f.name,
                                   "--initial-cluster-token",
                                   f.initial_cluster_token,
                                   "--initial-advertise-peer-urls",
                                   f.initial_advertise_peer_urls};
  if (!f.initial_cluster.empty()) {
    args.push_back("--initial-cluster");
    args.push_back(f.initial_cluster);
  } else {
    args.push_back("--initial-cluster");
    args.push_back(f.name + "=" + f.initial_advertise_peer_urls);
  }
  // Without --data-dir, the directory `serve --name` will look in.
  if (!f.data_dir.empty()) {
    args.push_back("--data-dir");
    args.push_back(f.data_dir);
  }
  auto config = server::ParseServerConfig(args, {});
  if (!config.ok()) {
    std::fprintf(stderr, "Error: %s\n", config.status().message().c_str());
    return 3;
  }
  const std::string data_dir = config->data_dir;
  server::RestoreOptions options;
  options.snapshot_path = f.file;
  options.data_dir = data_dir;
  options.member_id = server::LocalMemberId(*config);
  options.cluster_id = server::LocalClusterId(*config);
  options.members = server::InitialMembers(*config);
  if (Status s = server::RestoreSnapshot(options); !s.ok()) {
    std::fprintf(stderr, "Error: %s\n", s.message().c_str());
    return 1;
  }
  std::printf("restored snapshot %s into %s (member %llx of cluster %llx)\n", f.file.c_str(),
              data_dir.c_str(), static_cast<unsigned long long>(options.member_id),
              static_cast<unsigned long long>(options.cluster_id));
  return 0;
}

}  // namespace

std::function<int()> AddSnapshotRestore(CLI::App* snapshot) {
  auto flags = std::make_shared<RestoreFlags>();
  CLI::App* cmd = snapshot->add_subcommand("restore",
                                           "build a new member's data directory from a "
                                           "saved snapshot");
  cmd->add_option("file", flags->file, "the snapshot file (from `snapshot save`)")->required();
  cmd->add_option("--name", flags->name, "the member's name")->capture_default_str();
  cmd->add_option("--data-dir", flags->data_dir,
                  "where to build it (default <name>.conclave, as for serve)");
  cmd->add_option("--initial-cluster", flags->initial_cluster,
                  "the new cluster's members: name=peer-url,...");
  cmd->add_option("--initial-cluster-token", flags->initial_cluster_token,
                  "the new cluster's token")
      ->capture_default_str();
  cmd->add_option("--initial-advertise-peer-urls", flags->initial_advertise_peer_urls,
                  "this member's peer URLs")
      ->capture_default_str();
  cmd->add_flag("--skip-hash-check", flags->skip_hash_check,
                "accepted for compatibility; the checksum is always checked");
  return [cmd, flags]() -> int {
    if (!cmd->parsed()) return -1;
    return Restore(*flags);
  };
}

}  // namespace conclave::cli
