// OCI image archives: unpacks the archive of a container image into a root filesystem for
// OciRuntime (oci.h) and returns the image's config (entrypoint, cmd, env, working dir, user).
//
// Two archive formats are accepted, the ones common tools write: the OCI image layout as a tar
// (`oci-layout`, `index.json`, `blobs/sha256/...`; `skopeo copy ... oci-archive:`, `docker save`
// since 25) and the docker-archive (`docker save`: `manifest.json` naming a config and layer
// tars). The outer archive may itself be gzip or zstd compressed. Layers are tar, tar+gzip or
// tar+zstd (told apart by their magic bytes) and are applied in order with AUFS-style whiteouts
// (`.wh.NAME` deletes NAME, `.wh..wh..opq` empties a directory of what lower layers put there).
//
// The archive is untrusted input. Every blob is checked against its sha256 digest before use
// (OCI: each blob by its name; docker-archive: the config by its name, each layer by the
// config's rootfs.diff_ids), entry paths that are absolute or contain ".." are refused, and
// every path is resolved inside the root filesystem as if it were "/" (symlinks included), so
// nothing an archive contains can create or change a file outside it. Device nodes are skipped
// (containers get their own /dev). The unpacked size and the number of entries are capped.
//
// Caching: an image is unpacked once, into IMAGES/<sha256>/rootfs next to its config
// (IMAGES/<sha256>/config.json), keyed by the archive's sha256. Containers share that rootfs
// read-only (see oci.h), so a cached image is never modified after it is published, which is
// done by renaming a fully unpacked temporary directory into place.
//
// Thread-safety: the functions are thread-safe; two processes or threads unpacking the same
// image at once both succeed (one of them publishes, the other discards its copy).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace verge::node::runtime {

// The part of an image's config that decides how its process runs.
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_dir;
  std::string user;  // "", "uid", "uid:gid", "name", "name:group"
  bool operator==(const ImageConfig&) const = default;
};

struct UnpackLimits {
  // Bytes of regular-file content over all layers; a layer deleting files does not give
  // the budget back (this bounds the work, not only the result).
  uint64_t max_bytes = 8ULL << 30;
  // Entries over all layers and the outer archive (files, directories, links, whiteouts).
  uint64_t max_entries = 1'000'000;
};

struct UnpackedImage {
  std::string key;     // the image's sha256, hex
  std::string rootfs;  // IMAGES/<key>/rootfs
  ImageConfig config;
};

// Unpacks `archive` into `rootfs`, which must not exist yet; on failure nothing is left behind.
Result<ImageConfig> UnpackImageArchive(const std::string& archive, const std::string& rootfs,
                                       const UnpackLimits& limits);

// Unpacks a plain tarball (tar, tar+gzip or tar+zstd: a native app's artifact) into `dir`, which
// must not exist yet, with the same confinement as image layers (no absolute paths, no "..",
// symbolic links resolved inside `dir`, the limits); on failure nothing is left behind.
Status UnpackTarball(const std::string& tarball, const std::string& dir,
                     const UnpackLimits& limits);

// Unpacks `archive` into IMAGES/<key>/ unless it is there already. The key is the archive's
// file name when that is a sha256 in hex (optionally followed by an extension such as
// ".tar"), as the node stores artifacts under their digests; otherwise the archive is hashed.
Result<UnpackedImage> UnpackImageCached(const std::string& archive, const std::string& images_dir,
                                        const UnpackLimits& limits);

// The identity the container's process takes.
struct ImageUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;
  std::string home = "/";
};

// The uid the process runs as when the image names no user: "nobody", never root by accident.
inline constexpr uint32_t kDefaultContainerUid = 65534;

// Resolves an image's User ("", "uid", "uid:gid", "name", "name:group") against the rootfs's
// /etc/passwd and /etc/group, as Docker does: supplementary groups from /etc/group, the primary
// group from /etc/passwd, gid 0 for a numeric uid that /etc/passwd does not know. An empty user
// is kDefaultContainerUid:kDefaultContainerUid.
Result<ImageUser> ResolveImageUser(const std::string& rootfs, const std::string& user);

// Hex sha256 of a file's content.
Result<std::string> Sha256File(const std::string& path);

}  // namespace verge::node::runtime
