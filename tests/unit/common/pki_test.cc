#include "common/pki.h"

#include <gtest/gtest.h>

#include "common/bootstrap_token.h"

namespace verge::pki {
namespace {

TEST(Pki, CaIssuesClientCertForTheNodeNameOnly) {
  auto ca = CertificateAuthority::Create("test CA", 10);
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  auto key = GenerateKey();
  ASSERT_TRUE(key.ok());
  // The CSR asks for another name: the CA must ignore it and use the node name.
  auto csr = MakeCsr(key->private_key_pem, "admin");
  ASSERT_TRUE(csr.ok());
  auto cert = ca->IssueClientCert(*csr, "node-1", 30);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  auto info = InspectCertificate(*cert);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "node-1");
  EXPECT_FALSE(info->is_ca);
  EXPECT_FALSE(info->serial_hex.empty());
  EXPECT_TRUE(CheckKeyMatchesCert(key->private_key_pem, *cert).ok());
  int64_t mid = (info->not_before_ms + info->not_after_ms) / 2;
  EXPECT_TRUE(VerifyIssuedBy(ca->cert_pem(), *cert, mid).ok());
  // Asked for 30 days from a 10-day CA: clamped to the CA's own expiry.
  EXPECT_EQ(info->not_after_ms, InspectCertificate(ca->cert_pem())->not_after_ms);
}

TEST(Pki, CertificateFromAnotherCaDoesNotVerify) {
  auto ca1 = CertificateAuthority::Create("one", 10);
  auto ca2 = CertificateAuthority::Create("two", 10);
  auto key = GenerateKey();
  auto cert = ca2->IssueClientCert(*MakeCsr(key->private_key_pem, "n"), "n", 30);
  ASSERT_TRUE(cert.ok());
  auto info = InspectCertificate(*cert);
  auto st = VerifyIssuedBy(ca1->cert_pem(), *cert, info->not_before_ms + 1000);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
}

TEST(Pki, ExpiredCertificateDoesNotVerify) {
  auto ca = CertificateAuthority::Create("ca", 10);
  auto key = GenerateKey();
  auto cert = ca->IssueClientCert(*MakeCsr(key->private_key_pem, "n"), "n", 1);
  auto info = InspectCertificate(*cert);
  EXPECT_FALSE(VerifyIssuedBy(ca->cert_pem(), *cert, info->not_after_ms + 1000).ok());
}

TEST(Pki, SerialsAreUnique) {
  auto ca = CertificateAuthority::Create("ca", 10);
  auto key = GenerateKey();
  auto csr = MakeCsr(key->private_key_pem, "n");
  auto a = InspectCertificate(*ca->IssueClientCert(*csr, "n", 1));
  auto b = InspectCertificate(*ca->IssueClientCert(*csr, "n", 1));
  EXPECT_NE(a->serial_hex, b->serial_hex);
}

TEST(Pki, GarbageIsAnErrorNotACrash) {
  auto ca = CertificateAuthority::Create("ca", 10);
  EXPECT_FALSE(ca->IssueClientCert("not a csr", "n", 1).ok());
  EXPECT_FALSE(
      InspectCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").ok());
  EXPECT_FALSE(MakeCsr("garbage", "n").ok());
  EXPECT_FALSE(CheckKeyMatchesCert("x", "y").ok());
  EXPECT_FALSE(Fingerprint("").ok());
  // A CA whose key does not match its certificate is refused.
  auto other = CertificateAuthority::Create("other", 10);
  EXPECT_FALSE(CertificateAuthority::Load(ca->cert_pem(), other->key_pem()).ok());
}

TEST(Pki, CsrWithBadSignatureIsRefused) {
  auto ca = CertificateAuthority::Create("ca", 10);
  auto key = GenerateKey();
  std::string csr = *MakeCsr(key->private_key_pem, "n");
  // Flip a character inside the base64 body (in the signature, near the end).
  size_t end = csr.find("-----END");
  ASSERT_NE(end, std::string::npos);
  size_t pos = end - 10;
  csr[pos] = csr[pos] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(ca->IssueClientCert(csr, "n", 1).ok());
}

TEST(Pki, ServerCertCarriesNamesAndAddresses) {
  auto ca = CertificateAuthority::Create("ca", 10);
  auto key = GenerateKey();
  auto cert = ca->IssueServerCert(key->private_key_pem, "srv", {"localhost", "cloud.example"},
                                  {"127.0.0.1", "::1"}, 10);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_TRUE(CheckKeyMatchesCert(key->private_key_pem, *cert).ok());
}

TEST(Pki, FingerprintIsSha256OfDer) {
  auto ca = CertificateAuthority::Create("ca", 10);
  auto fp = Fingerprint(ca->cert_pem());
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(fp->size(), 64u);
  EXPECT_EQ(*fp, *Fingerprint(ca->cert_pem()));
}

TEST(Pki, RandomTokenAlphabetAndConstantTimeEquals) {
  std::string t = RandomToken(200);
  EXPECT_EQ(t.size(), 200u);
  for (char c : t)
    EXPECT_TRUE(std::islower(static_cast<unsigned char>(c)) ||
                std::isdigit(static_cast<unsigned char>(c)));
  EXPECT_NE(RandomToken(16), RandomToken(16));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(BootstrapToken, RoundTripsAndRejectsMalformed) {
  BootstrapTokenParts p{std::string(64, 'a'), "abc123", "0123456789abcdef"};
  auto parsed = ParseBootstrapToken(FormatBootstrapToken(p));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->ca_fingerprint, p.ca_fingerprint);
  EXPECT_EQ(parsed->Credential(), "abc123.0123456789abcdef");
  for (const char* bad :
       {"", "verge1", "verge2.aa.abc123.0123456789abcdef", "verge1.zz.abc123.0123456789abcdef",
        "verge1.aaaa.abc123.0123456789abcdef.extra", "abc123.0123456789abcdef"}) {
    EXPECT_FALSE(ParseBootstrapToken(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseJoinCredential("ABC123.0123456789abcdef").ok());
  EXPECT_FALSE(ParseJoinCredential("abc123.short").ok());
}

}  // namespace
}  // namespace verge::pki
