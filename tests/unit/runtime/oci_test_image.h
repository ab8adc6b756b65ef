// Test images for the OCI runtime, built hermetically: a root filesystem from the static
// busybox (/usr/bin/busybox, package busybox-static), layer tars written by GNU tar (or by
// TarWriter, for entries no sane tool writes), gzip or zstd compressed, and packed as either
// archive format a user gets from common tools (OCI image layout tar, docker-archive) with real
// sha256 digests. Shared by the unit tests and the integration tests.
//
// Thread-safety: plain functions over the file system; tests use their own directories.
#pragma once

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "node/runtime/oci_image.h"

namespace verge::testing {

inline constexpr const char* kBusybox = "/usr/bin/busybox";

inline bool HaveBusybox() { return ::access(kBusybox, X_OK) == 0; }

// Runs a shell command line; throws on failure (tests build their inputs with it).
inline void Sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc != 0) throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd);
}

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::string ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string Sha256Of(const std::string& path) {
  auto r = node::runtime::Sha256File(path);
  if (!r.ok()) throw std::runtime_error(r.status().ToString());
  return *r;
}

// A root filesystem with bin/busybox, its applets as symlinks, and /etc/passwd and /etc/group
// naming root, nobody and an "app" user (uid 1000, also in group "extra" 2000).
inline void MakeBusyboxRootfs(const std::string& dir) {
  std::filesystem::create_directories(dir + "/bin");
  std::filesystem::copy_file(kBusybox, dir + "/bin/busybox",
                             std::filesystem::copy_options::overwrite_existing);
  ::chmod((dir + "/bin/busybox").c_str(), 0755);
  for (const char* applet :
       {"sh",   "echo",  "sleep", "cat",  "hostname", "id",   "wget", "nc",    "ls",
        "awk",  "touch", "test",  "true", "false",    "env",  "pwd",  "mkdir", "rm",
        "head", "tr",    "ip",    "ps",   "kill",     "grep", "dd"}) {
    std::filesystem::create_symlink("busybox", dir + "/bin/" + applet);
  }
  WriteText(dir + "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n"
            "app:x:1000:1000:app:/home/app:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  WriteText(dir + "/etc/group",
            "root:x:0:\n"
            "app:x:1000:\n"
            "extra:x:2000:app,other\n"
            "nogroup:x:65534:\n");
  std::filesystem::create_directories(dir + "/home/app");
  std::filesystem::create_directories(dir + "/tmp");
  ::chmod((dir + "/tmp").c_str(), 01777);  // runc gives a tmpfs the mode of what it covers
}

// A tar of the contents of `dir` (GNU tar, root-owned entries, "./" prefixed names).
inline void TarDirectory(const std::string& dir, const std::string& out) {
  Sh("tar --numeric-owner --owner=0 --group=0 -C " + Quote(dir) + " -cf " + Quote(out) + " .");
}

// ustar/PAX writer for layers with entries GNU tar would refuse to write ("../x", "/abs").
class TarWriter {
 public:
  void File(const std::string& name, const std::string& content, int mode = 0644) {
    Entry(name, '0', content, "", mode);
  }
  void Dir(const std::string& name, int mode = 0755) { Entry(name, '5', "", "", mode); }
  void Symlink(const std::string& name, const std::string& target) {
    Entry(name, '2', "", target, 0777);
  }
  void Hardlink(const std::string& name, const std::string& target) {
    Entry(name, '1', "", target, 0644);
  }
  // A header with any type and size field, and `data` (which may disagree with the size).
  void Raw(const std::string& name, char type, uint64_t size, const std::string& data) {
    std::string h = Header(name, type, size, "", 0644);
    out_ += h + data;
    Pad();
  }
  std::string Finish() { return out_ + std::string(1024, '\0'); }
  void WriteTo(const std::string& path) { WriteText(path, Finish()); }

 private:
  static void Octal(std::string& h, size_t off, size_t len, uint64_t v) {
    std::string s(len - 1, '0');
    for (size_t i = len - 1; i-- > 0 && v > 0; v >>= 3) s[i] = static_cast<char>('0' + (v & 7));
    h.replace(off, len - 1, s);
    h[off + len - 1] = '\0';
  }
  static std::string Header(const std::string& name, char type, uint64_t size,
                            const std::string& link, int mode) {
    std::string h(512, '\0');
    h.replace(0, std::min<size_t>(name.size(), 100), name.substr(0, 100));
    Octal(h, 100, 8, static_cast<uint64_t>(mode));
    Octal(h, 108, 8, 0);
    Octal(h, 116, 8, 0);
    Octal(h, 124, 12, size);
    Octal(h, 136, 12, 1700000000);
    h[156] = type;
    h.replace(157, std::min<size_t>(link.size(), 100), link.substr(0, 100));
    h.replace(257, 6, std::string("ustar\0", 6));
    h.replace(263, 2, "00");
    h.replace(148, 8, "        ");
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    Octal(h, 148, 7, sum);
    h[155] = ' ';
    return h;
  }
  void Entry(const std::string& name, char type, const std::string& content,
             const std::string& link, int mode) {
    if (name.size() > 100 || link.size() > 100) {
      std::string records;
      auto record = [&](const std::string& key, const std::string& value) {
        std::string body = " " + key + "=" + value + "\n";
        size_t len = body.size() + 1;
        while (std::to_string(len).size() + body.size() != len) ++len;
        records += std::to_string(len) + body;
      };
      if (name.size() > 100) record("path", name);
      if (link.size() > 100) record("linkpath", link);
      out_ += Header("PaxHeader", 'x', records.size(), "", 0644) + records;
      Pad();
    }
    out_ += Header(name, type, content.size(), link, mode) + content;
    Pad();
  }
  void Pad() { out_.append((512 - out_.size() % 512) % 512, '\0'); }
  std::string out_;
};

enum class ArchiveFormat { kOciLayout, kDockerArchive };
enum class Compression { kNone, kGzip, kZstd };

inline std::string Name(ArchiveFormat f) {
  return f == ArchiveFormat::kOciLayout ? "oci" : "docker";
}
inline std::string Name(Compression c) {
  return c == Compression::kNone ? "tar" : c == Compression::kGzip ? "gzip" : "zstd";
}

struct TestImage {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env = {"PATH=/bin"};
  std::string working_dir;
  std::string user;
  std::string architecture;  // "": this machine's
  ArchiveFormat format = ArchiveFormat::kOciLayout;
  Compression compression = Compression::kNone;
  // Runs on the staging directory after the digests were computed and before it is packed:
  // tests corrupt blobs with it.
  std::function<void(const std::string& staging)> tamper;
};

inline std::string HostArchitecture() {
  utsname u{};
  ::uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

// Packs the uncompressed layer tars `layers` (applied in order) into an image archive written
// to OUT_DIR/<sha256 of the archive>.tar, and returns that path. `work` is scratch space.
inline std::string WriteImageArchive(const std::string& work, const std::string& out_dir,
                                     const std::vector<std::string>& layers,
                                     const TestImage& image) {
  using nlohmann::json;
  static int counter = 0;
  std::string staging = work + "/staging-" + std::to_string(++counter);
  std::filesystem::remove_all(staging);
  std::filesystem::create_directories(staging + "/blobs/sha256");
  std::filesystem::create_directories(out_dir);

  json diff_ids = json::array();
  std::vector<std::string> blobs;  // compressed layer files, in order
  for (size_t i = 0; i < layers.size(); ++i) {
    diff_ids.push_back("sha256:" + Sha256Of(layers[i]));
    std::string blob = staging + "/layer-" + std::to_string(i);
    switch (image.compression) {
      case Compression::kNone:
        Sh("cp " + Quote(layers[i]) + " " + Quote(blob));
        break;
      case Compression::kGzip:
        Sh("gzip -n -c " + Quote(layers[i]) + " > " + Quote(blob));
        break;
      case Compression::kZstd:
        Sh("zstd -q -c " + Quote(layers[i]) + " > " + Quote(blob));
        break;
    }
    blobs.push_back(blob);
  }
  json config_section = json::object();
  if (!image.entrypoint.empty()) config_section["Entrypoint"] = image.entrypoint;
  if (!image.cmd.empty()) config_section["Cmd"] = image.cmd;
  config_section["Env"] = image.env;
  if (!image.working_dir.empty()) config_section["WorkingDir"] = image.working_dir;
  if (!image.user.empty()) config_section["User"] = image.user;
  json config = {
      {"architecture", image.architecture.empty() ? HostArchitecture() : image.architecture},
      {"os", "linux"},
      {"config", config_section},
      {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
  };
  std::string config_text = config.dump();
  std::string config_tmp = staging + "/config.tmp";
  WriteText(config_tmp, config_text);
  std::string config_hex = Sha256Of(config_tmp);

  if (image.format == ArchiveFormat::kOciLayout) {
    const char* layer_type =
        image.compression == Compression::kNone   ? "application/vnd.oci.image.layer.v1.tar"
        : image.compression == Compression::kGzip ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                                  : "application/vnd.oci.image.layer.v1.tar+zstd";
    json layer_descs = json::array();
    for (const auto& blob : blobs) {
      std::string hex = Sha256Of(blob);
      layer_descs.push_back({{"mediaType", layer_type},
                             {"digest", "sha256:" + hex},
                             {"size", std::filesystem::file_size(blob)}});
      std::filesystem::rename(blob, staging + "/blobs/sha256/" + hex);
    }
    std::filesystem::rename(config_tmp, staging + "/blobs/sha256/" + config_hex);
    json manifest = {
        {"schemaVersion", 2},
        {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
        {"config",
         {{"mediaType", "application/vnd.oci.image.config.v1+json"},
          {"digest", "sha256:" + config_hex},
          {"size", config_text.size()}}},
        {"layers", layer_descs},
    };
    std::string manifest_text = manifest.dump();
    WriteText(staging + "/manifest.tmp", manifest_text);
    std::string manifest_hex = Sha256Of(staging + "/manifest.tmp");
    std::filesystem::rename(staging + "/manifest.tmp", staging + "/blobs/sha256/" + manifest_hex);
    json index = {
        {"schemaVersion", 2},
        {"mediaType", "application/vnd.oci.image.index.v1+json"},
        {"manifests",
         {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
           {"digest", "sha256:" + manifest_hex},
           {"size", manifest_text.size()},
           {"annotations", {{"org.opencontainers.image.ref.name", "latest"}}}}}},
    };
    WriteText(staging + "/index.json", index.dump());
    WriteText(staging + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  } else {
    json layer_paths = json::array();
    for (size_t i = 0; i < blobs.size(); ++i) {
      std::string id = Sha256Of(layers[i]);  // docker names layer dirs by an id, not a digest
      std::filesystem::create_directories(staging + "/" + id);
      std::filesystem::rename(blobs[i], staging + "/" + id + "/layer.tar");
      layer_paths.push_back(id + "/layer.tar");
    }
    std::filesystem::rename(config_tmp, staging + "/" + config_hex + ".json");
    json manifest = json::array({{{"Config", config_hex + ".json"},
                                  {"RepoTags", {"test/busybox:latest"}},
                                  {"Layers", layer_paths}}});
    WriteText(staging + "/manifest.json", manifest.dump());
  }
  if (image.tamper) image.tamper(staging);
  std::string tmp = out_dir + "/archive.tmp";
  Sh("tar --numeric-owner --owner=0 --group=0 -C " + Quote(staging) + " -cf " + Quote(tmp) + " .");
  std::string path = out_dir + "/" + Sha256Of(tmp) + ".tar";
  std::filesystem::rename(tmp, path);
  std::filesystem::remove_all(staging);
  return path;
}

// A busybox image with one layer: the common case for runtime tests.
inline std::string BuildBusyboxImage(const std::string& work, const std::string& out_dir,
                                     const TestImage& image = {}) {
  std::string rootfs = work + "/busybox-rootfs";
  std::filesystem::remove_all(rootfs);
  MakeBusyboxRootfs(rootfs);
  std::string layer = work + "/busybox-layer.tar";
  TarDirectory(rootfs, layer);
  return WriteImageArchive(work, out_dir, {layer}, image);
}

}  // namespace verge::testing
