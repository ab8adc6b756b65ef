#include "node/runtime/oci_image.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "oci_test_image.h"

namespace verge::node::runtime {
namespace {

namespace fs = std::filesystem;
using testing::ArchiveFormat;
using testing::Compression;
using testing::TarWriter;
using testing::TestImage;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = fs::temp_directory_path().string() + "/oci-image-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool IsSymlinkTo(const std::string& path, const std::string& target) {
  std::error_code ec;
  return fs::is_symlink(fs::symlink_status(path)) && fs::read_symlink(path, ec) == target;
}

class ImageFormatTest : public ::testing::TestWithParam<std::tuple<ArchiveFormat, Compression>> {
 protected:
  void SetUp() override {
    if (!testing::HaveBusybox()) GTEST_SKIP() << "needs " << testing::kBusybox;
  }
  TempDir tmp_;
};

TEST_P(ImageFormatTest, UnpacksBusyboxAndConfig) {
  auto [format, compression] = GetParam();
  // Two layers: busybox, then an app layer adding files to existing and new directories.
  std::string base = tmp_.path() + "/base";
  testing::MakeBusyboxRootfs(base);
  testing::TarDirectory(base, tmp_.path() + "/l1.tar");
  std::string app = tmp_.path() + "/app";
  testing::WriteText(app + "/srv/app.txt", "hello\n");
  testing::WriteText(app + "/etc/motd", "layer two\n");
  testing::TarDirectory(app, tmp_.path() + "/l2.tar");

  TestImage image;
  image.format = format;
  image.compression = compression;
  image.entrypoint = {"/bin/sh", "-c"};
  image.cmd = {"echo hi"};
  image.env = {"PATH=/bin", "GREETING=hi"};
  image.working_dir = "/srv";
  image.user = "app";
  std::string archive =
      testing::WriteImageArchive(tmp_.path(), tmp_.path() + "/artifacts",
                                 {tmp_.path() + "/l1.tar", tmp_.path() + "/l2.tar"}, image);

  auto unpacked = UnpackImageCached(archive, tmp_.path() + "/images", UnpackLimits{});
  ASSERT_TRUE(unpacked.ok()) << unpacked.status().ToString();
  EXPECT_EQ(unpacked->key, testing::Sha256Of(archive));
  EXPECT_EQ(unpacked->rootfs, tmp_.path() + "/images/" + unpacked->key + "/rootfs");
  EXPECT_EQ(unpacked->config.entrypoint, image.entrypoint);
  EXPECT_EQ(unpacked->config.cmd, image.cmd);
  EXPECT_EQ(unpacked->config.env, image.env);
  EXPECT_EQ(unpacked->config.working_dir, "/srv");
  EXPECT_EQ(unpacked->config.user, "app");

  const std::string& root = unpacked->rootfs;
  EXPECT_EQ(fs::file_size(root + "/bin/busybox"), fs::file_size(testing::kBusybox));
  EXPECT_EQ(::access((root + "/bin/busybox").c_str(), X_OK), 0);
  EXPECT_TRUE(IsSymlinkTo(root + "/bin/sh", "busybox"));
  EXPECT_EQ(testing::ReadText(root + "/srv/app.txt"), "hello\n");
  EXPECT_EQ(testing::ReadText(root + "/etc/motd"), "layer two\n");
  EXPECT_NE(testing::ReadText(root + "/etc/passwd").find("app:x:1000"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(root.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ImageFormatTest,
    ::testing::Combine(::testing::Values(ArchiveFormat::kOciLayout, ArchiveFormat::kDockerArchive),
                       ::testing::Values(Compression::kNone, Compression::kGzip,
                                         Compression::kZstd)),
    [](const auto& info) {
      return testing::Name(std::get<0>(info.param)) + "_" + testing::Name(std::get<1>(info.param));
    });

class OciImageTest : public ::testing::Test {
 protected:
  // An image whose layers are the given TarWriter outputs.
  std::string Image(std::vector<TarWriter> layers, const TestImage& image = {}) {
    std::vector<std::string> paths;
    for (auto& l : layers) {
      std::string p = tmp_.path() + "/layer-" + std::to_string(++n_) + ".tar";
      l.WriteTo(p);
      paths.push_back(p);
    }
    return testing::WriteImageArchive(tmp_.path(), tmp_.path() + "/artifacts", paths, image);
  }
  Result<ImageConfig> Unpack(const std::string& archive, UnpackLimits limits = {}) {
    fs::remove_all(rootfs());
    return UnpackImageArchive(archive, rootfs(), limits);
  }
  std::string rootfs() const { return tmp_.path() + "/rootfs"; }

  TempDir tmp_;
  int n_ = 0;
};

// Native apps' tarball artifacts go through the same confinement as image layers.
TEST_F(OciImageTest, TarballArtifactsUnpackConfined) {
  TarWriter good;
  good.Dir("bin");
  good.File("bin/tool", "#!/bin/sh\necho hi\n", 0755);
  good.Symlink("current", "bin");
  std::string ok_tar = tmp_.path() + "/ok.tar";
  good.WriteTo(ok_tar);
  std::string out = tmp_.path() + "/ok";
  ASSERT_TRUE(UnpackTarball(ok_tar, out, {}).ok());
  EXPECT_EQ(testing::ReadText(out + "/bin/tool"), "#!/bin/sh\necho hi\n");
  EXPECT_TRUE(fs::is_symlink(out + "/current"));

  TarWriter bad;
  bad.File("../escape", "x");
  std::string bad_tar = tmp_.path() + "/bad.tar";
  bad.WriteTo(bad_tar);
  auto st = UnpackTarball(bad_tar, tmp_.path() + "/bad", {});
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(fs::exists(tmp_.path() + "/escape"));
  EXPECT_FALSE(fs::exists(tmp_.path() + "/bad")) << "nothing is left behind";

  TarWriter through;
  through.Symlink("out", "/etc");
  through.File("out/verge-escape", "x");
  std::string through_tar = tmp_.path() + "/through.tar";
  through.WriteTo(through_tar);
  (void)UnpackTarball(through_tar, tmp_.path() + "/through", {});
  EXPECT_FALSE(fs::exists("/etc/verge-escape"));

  EXPECT_FALSE(UnpackTarball(tmp_.path() + "/missing.tar", tmp_.path() + "/m", {}).ok());
}

TEST_F(OciImageTest, CachedImageIsUnpackedOnce) {
  TarWriter l;
  l.File("a.txt", "one");
  std::string archive = Image({l});
  std::string images = tmp_.path() + "/images";
  auto first = UnpackImageCached(archive, images, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // A marker in the cached copy survives a second call: it was not unpacked again.
  testing::WriteText(first->rootfs + "/marker", "x");
  auto second = UnpackImageCached(archive, images, {});
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->rootfs, first->rootfs);
  EXPECT_TRUE(fs::exists(second->rootfs + "/marker"));
  // No temporary directories are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(images)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(OciImageTest, ArchiveNotNamedByDigestIsHashed) {
  TarWriter l;
  l.File("a.txt", "one");
  std::string archive = Image({l});
  std::string renamed = tmp_.path() + "/image.tar";
  fs::copy_file(archive, renamed);
  auto unpacked = UnpackImageCached(renamed, tmp_.path() + "/images", {});
  ASSERT_TRUE(unpacked.ok()) << unpacked.status().ToString();
  EXPECT_EQ(unpacked->key, testing::Sha256Of(archive));
}

TEST_F(OciImageTest, CompressedOuterArchive) {
  TarWriter l;
  l.File("a.txt", "one");
  std::string archive = Image({l});
  testing::Sh("gzip -n -c " + testing::Quote(archive) + " > " + testing::Quote(archive + ".gz"));
  auto config = Unpack(archive + ".gz");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(testing::ReadText(rootfs() + "/a.txt"), "one");
}

TEST_F(OciImageTest, WhiteoutsDeleteAndOpaqueDirectoriesHideLowerLayers) {
  TarWriter l1;
  l1.Dir("a");
  l1.File("a/keep", "k");
  l1.File("a/gone", "g");
  l1.Dir("a/gonedir");
  l1.File("a/gonedir/inner", "i");
  l1.Dir("b");
  l1.File("b/old1", "1");
  l1.Dir("b/olddir");
  l1.File("b/olddir/x", "x");
  TarWriter l2;
  l2.File("a/.wh.gone", "");
  l2.File("a/.wh.gonedir", "");
  l2.File("a/.wh.never-existed", "");
  l2.Dir("b");
  l2.File("b/new-before-marker", "n");  // this layer's own entry: the marker must not hide it
  l2.File("b/.wh..wh..opq", "");
  l2.File("b/new-after-marker", "m");
  ASSERT_TRUE(Unpack(Image({l1, l2})).ok());
  EXPECT_TRUE(fs::exists(rootfs() + "/a/keep"));
  EXPECT_FALSE(fs::exists(rootfs() + "/a/gone"));
  EXPECT_FALSE(fs::exists(rootfs() + "/a/gonedir"));
  EXPECT_FALSE(fs::exists(rootfs() + "/a/.wh.gone"));
  EXPECT_FALSE(fs::exists(rootfs() + "/b/old1"));
  EXPECT_FALSE(fs::exists(rootfs() + "/b/olddir"));
  EXPECT_FALSE(fs::exists(rootfs() + "/b/.wh..wh..opq"));
  EXPECT_TRUE(fs::exists(rootfs() + "/b/new-before-marker"));
  EXPECT_TRUE(fs::exists(rootfs() + "/b/new-after-marker"));
}

TEST_F(OciImageTest, LaterLayersReplaceTypes) {
  TarWriter l1;
  l1.Dir("x");
  l1.File("x/inner", "i");
  l1.File("y", "file");
  l1.File("z", "target");
  TarWriter l2;
  l2.File("x", "now a file");  // a directory replaced by a file
  l2.Dir("y");                 // a file replaced by a directory
  l2.Hardlink("z2", "z");
  l2.Symlink("z3", "z");
  ASSERT_TRUE(Unpack(Image({l1, l2})).ok());
  EXPECT_EQ(testing::ReadText(rootfs() + "/x"), "now a file");
  EXPECT_TRUE(fs::is_directory(rootfs() + "/y"));
  EXPECT_TRUE(fs::equivalent(rootfs() + "/z", rootfs() + "/z2"));
  EXPECT_TRUE(IsSymlinkTo(rootfs() + "/z3", "z"));
}

TEST_F(OciImageTest, LongNamesThroughPaxAndGnuTar) {
  std::string long_dir(120, 'd');
  TarWriter l;
  l.File(long_dir + "/" + std::string(150, 'f'), "pax");
  l.Symlink("longlink", "/" + long_dir + "/" + std::string(150, 'f'));
  ASSERT_TRUE(Unpack(Image({l})).ok());
  EXPECT_EQ(testing::ReadText(rootfs() + "/" + long_dir + "/" + std::string(150, 'f')), "pax");
  EXPECT_TRUE(IsSymlinkTo(rootfs() + "/longlink", "/" + long_dir + "/" + std::string(150, 'f')));

  // GNU tar writes ././@LongLink entries for the same.
  std::string src = tmp_.path() + "/gnu";
  testing::WriteText(src + "/" + long_dir + "/" + std::string(200, 'g'), "gnu");
  testing::TarDirectory(src, tmp_.path() + "/gnu.tar");
  std::string archive = testing::WriteImageArchive(tmp_.path(), tmp_.path() + "/artifacts",
                                                   {tmp_.path() + "/gnu.tar"}, {});
  ASSERT_TRUE(Unpack(archive).ok());
  EXPECT_EQ(testing::ReadText(rootfs() + "/" + long_dir + "/" + std::string(200, 'g')), "gnu");
}

TEST_F(OciImageTest, RejectsParentAndAbsolutePaths) {
  std::string outside = tmp_.path() + "/outside";
  fs::create_directories(outside);
  for (const std::string& name :
       {std::string("../outside/pwned"), std::string("a/../../x"), outside + "/pwned"}) {
    TarWriter l;
    l.File("ok", "fine");
    l.File(name, "evil");
    auto r = Unpack(Image({l}));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
    EXPECT_FALSE(fs::exists(rootfs())) << "a failed unpack leaves nothing behind";
  }
  EXPECT_TRUE(fs::is_empty(outside));
  EXPECT_FALSE(fs::exists(tmp_.path() + "/x"));

  TarWriter hard;
  hard.Hardlink("passwd", "../../../../etc/passwd");
  auto r = Unpack(Image({hard}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_F(OciImageTest, SymlinksCannotLeadOutOfTheRootfs) {
  std::string outside = tmp_.path() + "/outside";
  fs::create_directories(outside);
  testing::WriteText(outside + "/secret", "do not link me");
  // Layer 1 plants symlinks pointing out (absolute and relative); the same layer and layer 2
  // then write through them.
  TarWriter l1;
  l1.Symlink("abs", outside);
  l1.Symlink("rel", "../../../../../../../../../.." + outside);
  l1.Symlink("abs-file", outside + "/target-file");
  l1.File("abs/in-same-layer", "evil");
  TarWriter l2;
  l2.File("abs/pwned", "evil");
  l2.File("rel/pwned-rel", "evil");
  l2.File("abs-file", "replaces the symlink, does not follow it");
  l2.Hardlink("hard", "abs/../abs/secret");  // would be ".."; this one is rejected below
  auto rejected = Unpack(Image({l1, l2}));
  ASSERT_FALSE(rejected.ok());

  TarWriter l3;
  l3.File("abs/pwned", "evil");
  l3.File("rel/pwned-rel", "evil");
  l3.File("abs-file", "replaces the symlink, does not follow it");
  l3.Hardlink("hard", "abs/secret");  // resolves inside the rootfs, where there is none
  auto hard = Unpack(Image({l1, l3}));
  ASSERT_FALSE(hard.ok());
  EXPECT_EQ(hard.status().code(), Code::kNotFound) << hard.status().ToString();

  TarWriter l4;
  l4.File("abs/pwned", "evil");
  l4.File("rel/pwned-rel", "evil");
  l4.File("abs-file", "replaces the symlink, does not follow it");
  auto contained = Unpack(Image({l1, l4}));
  ASSERT_TRUE(contained.ok()) << contained.status().ToString();
  // Nothing outside changed; everything landed where the link points inside the rootfs.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(outside)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"secret"});
  EXPECT_EQ(testing::ReadText(rootfs() + outside + "/pwned"), "evil");
  EXPECT_EQ(testing::ReadText(rootfs() + outside + "/pwned-rel"), "evil");
  EXPECT_EQ(testing::ReadText(rootfs() + outside + "/in-same-layer"), "evil");
  EXPECT_FALSE(fs::is_symlink(fs::symlink_status(rootfs() + "/abs-file")));
  EXPECT_FALSE(fs::exists(outside + "/target-file"));
}

TEST_F(OciImageTest, DeviceNodesAreSkipped) {
  TarWriter l;
  l.Raw("mem", '3', 0, "");
  l.File("after", "a");
  ASSERT_TRUE(Unpack(Image({l})).ok());
  EXPECT_FALSE(fs::exists(rootfs() + "/mem"));
  EXPECT_TRUE(fs::exists(rootfs() + "/after"));
}

TEST_F(OciImageTest, DigestMismatchesAreRejected) {
  TarWriter l;
  l.File("a.txt", std::string(4096, 'a'));
  auto flip = [](const std::string& path) {
    std::string data = testing::ReadText(path);
    data[data.size() / 2] ^= 1;
    testing::WriteText(path, data);
  };
  struct Case {
    const char* what;
    ArchiveFormat format;
    std::function<void(const std::string&)> tamper;
  };
  std::vector<Case> cases = {
      {"oci layer", ArchiveFormat::kOciLayout,
       [&](const std::string& s) {
         for (const auto& e : fs::directory_iterator(s + "/blobs/sha256")) {
           if (fs::file_size(e.path()) > 4096) flip(e.path());
         }
       }},
      {"docker layer", ArchiveFormat::kDockerArchive,
       [&](const std::string& s) {
         for (const auto& e : fs::recursive_directory_iterator(s)) {
           if (e.path().filename() == "layer.tar") flip(e.path());
         }
       }},
      {"docker config", ArchiveFormat::kDockerArchive,
       [&](const std::string& s) {
         for (const auto& e : fs::directory_iterator(s)) {
           if (e.path().extension() == ".json" && e.path().filename() != "manifest.json") {
             testing::WriteText(e.path(), testing::ReadText(e.path()) + " ");
           }
         }
       }},
  };
  for (const auto& c : cases) {
    TestImage image;
    image.format = c.format;
    image.tamper = c.tamper;
    auto r = Unpack(Image({l}, image));
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), Code::kDataLoss) << c.what << ": " << r.status().ToString();
    EXPECT_FALSE(fs::exists(rootfs()));
  }
}

TEST_F(OciImageTest, SizeAndEntryCaps) {
  TarWriter l;
  l.File("big", std::string(10000, 'b'));
  for (int i = 0; i < 20; ++i) l.File("f" + std::to_string(i), "x");
  std::string archive = Image({l});

  UnpackLimits small_bytes;
  small_bytes.max_bytes = 5000;
  auto r = Unpack(archive, small_bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("more than 5000 bytes"), std::string::npos)
      << r.status().ToString();

  UnpackLimits few_entries;
  few_entries.max_entries = 10;
  r = Unpack(archive, few_entries);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("more than 10 entries"), std::string::npos)
      << r.status().ToString();
  EXPECT_FALSE(fs::exists(rootfs()));

  UnpackLimits enough;
  enough.max_bytes = 10020;
  enough.max_entries = 40;
  EXPECT_TRUE(Unpack(archive, enough).ok());
}

TEST_F(OciImageTest, DecompressionBombStops) {
  // 64 MiB of zeros is a valid tar end marker followed by padding; gzip makes it tiny.
  std::string layer = tmp_.path() + "/zeros.tar";
  testing::Sh("head -c 67108864 /dev/zero > " + layer);
  TestImage image;
  image.compression = Compression::kGzip;
  std::string archive =
      testing::WriteImageArchive(tmp_.path(), tmp_.path() + "/artifacts", {layer}, image);
  UnpackLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_entries = 100;
  auto r = Unpack(archive, limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
}

TEST_F(OciImageTest, MalformedInputsFailCleanly) {
  // Not an archive at all.
  testing::WriteText(tmp_.path() + "/garbage", std::string(2000, 'z'));
  auto r = Unpack(tmp_.path() + "/garbage");
  EXPECT_FALSE(r.ok());
  // A tar without index.json or manifest.json.
  TarWriter plain;
  plain.File("hello", "x");
  plain.WriteTo(tmp_.path() + "/plain.tar");
  r = Unpack(tmp_.path() + "/plain.tar");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not an image archive"), std::string::npos);
  // A layer whose header claims more data than there is.
  TarWriter truncated;
  truncated.Raw("file", '0', 100000, "short");
  r = Unpack(Image({truncated}));
  EXPECT_FALSE(r.ok());
  // An image for another architecture.
  TarWriter l;
  l.File("a", "b");
  TestImage other;
  other.architecture = testing::HostArchitecture() == "arm64" ? "amd64" : "arm64";
  r = Unpack(Image({l}, other));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("built for"), std::string::npos);
  // Unsupported entry types are named.
  TarWriter sparse;
  sparse.Raw("s", 'S', 0, "");
  r = Unpack(Image({sparse}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unsupported tar entry type"), std::string::npos);
  EXPECT_FALSE(fs::exists(rootfs()));
}

TEST_F(OciImageTest, ResolvesUsers) {
  std::string root = tmp_.path() + "/root";
  testing::MakeBusyboxRootfs(root);

  auto by_name = ResolveImageUser(root, "app");
  ASSERT_TRUE(by_name.ok()) << by_name.status().ToString();
  EXPECT_EQ(by_name->uid, 1000u);
  EXPECT_EQ(by_name->gid, 1000u);
  EXPECT_EQ(by_name->home, "/home/app");
  EXPECT_EQ(by_name->additional_gids, std::vector<uint32_t>{2000});

  auto with_group = ResolveImageUser(root, "app:extra");
  ASSERT_TRUE(with_group.ok());
  EXPECT_EQ(with_group->gid, 2000u);
  EXPECT_TRUE(with_group->additional_gids.empty());

  auto numeric = ResolveImageUser(root, "1234");
  ASSERT_TRUE(numeric.ok());
  EXPECT_EQ(numeric->uid, 1234u);
  EXPECT_EQ(numeric->gid, 0u);  // as Docker: unknown uid, group root
  EXPECT_EQ(numeric->home, "/");

  auto numeric_pair = ResolveImageUser(root, "1234:5678");
  ASSERT_TRUE(numeric_pair.ok());
  EXPECT_EQ(numeric_pair->gid, 5678u);

  auto none = ResolveImageUser(root, "");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->uid, kDefaultContainerUid);
  EXPECT_EQ(none->gid, kDefaultContainerUid);

  EXPECT_EQ(ResolveImageUser(root, "ghost").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ResolveImageUser(root, "app:ghosts").status().code(), Code::kFailedPrecondition);

  // No /etc/passwd at all: numeric users still work; the default stays nobody.
  std::string bare = tmp_.path() + "/bare";
  fs::create_directories(bare);
  auto bare_default = ResolveImageUser(bare, "");
  ASSERT_TRUE(bare_default.ok());
  EXPECT_EQ(bare_default->uid, kDefaultContainerUid);
  EXPECT_EQ(bare_default->gid, kDefaultContainerUid);

  // /etc/passwd as a symlink out of the rootfs is read inside it (here: not found).
  std::string evil = tmp_.path() + "/evil";
  fs::create_directories(evil + "/etc");
  testing::WriteText(tmp_.path() + "/host-passwd", "mallory:x:0:0::/:/bin/sh\n");
  fs::create_symlink(tmp_.path() + "/host-passwd", evil + "/etc/passwd");
  EXPECT_EQ(ResolveImageUser(evil, "mallory").status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace verge::node::runtime
