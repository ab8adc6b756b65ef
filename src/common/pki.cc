#include "common/pki.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>

namespace verge::pki {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(char* p) const { OPENSSL_free(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Free>;

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

Status SslError(std::string_view what) {
  return Error(Code::kInvalidArgument, "{}: {}", what, OpenSslError());
}

Ptr<BIO> MemBio(const std::string& s) {
  return Ptr<BIO>(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Ptr<EVP_PKEY>> ParseKey(const std::string& pem) {
  auto bio = MemBio(pem);
  Ptr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return SslError("cannot parse private key");
  return key;
}

Result<Ptr<X509>> ParseCert(const std::string& pem) {
  auto bio = MemBio(pem);
  Ptr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return SslError("cannot parse certificate");
  return cert;
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    return SslError("cannot encode private key");
  }
  return BioString(bio.get());
}

Result<std::string> CertPem(X509* cert) {
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert)) return SslError("cannot encode certificate");
  return BioString(bio.get());
}

Result<Ptr<EVP_PKEY>> NewEcKey() {
  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) return SslError("cannot generate key");
  return key;
}

std::string NameEntry(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return "";
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

int64_t AsnTimeMs(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

Status AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return SslError("cannot build certificate extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return Status::Ok();
}

// A fresh certificate with a random 127-bit serial and the given validity.
Result<Ptr<X509>> NewCert(const std::string& cn, int validity_days) {
  Ptr<X509> cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  serial[0] |= 0x01;  // never zero, never negative
  Ptr<BIGNUM> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
  // Backdate a little so that small clock skew between cloud and node does not matter.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity_days) * 86400L);
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0)) {
    return SslError("cannot set certificate subject");
  }
  return cert;
}

// A certificate must not outlive its issuer: it would fail verification after the CA expires.
void ClampToIssuer(X509* cert, X509* issuer) {
  if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(issuer)) > 0) {
    X509_set1_notAfter(cert, X509_get0_notAfter(issuer));
  }
}

}  // namespace

Result<KeyPair> GenerateKey() {
  VERGE_ASSIGN_OR_RETURN(auto key, NewEcKey());
  VERGE_ASSIGN_OR_RETURN(auto pem, KeyPem(key.get()));
  return KeyPair{std::move(pem)};
}

Result<std::string> MakeCsr(const std::string& private_key_pem, const std::string& common_name) {
  VERGE_ASSIGN_OR_RETURN(auto key, ParseKey(private_key_pem));
  Ptr<X509_REQ> req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                  -1, 0)) {
    return SslError("cannot set CSR subject");
  }
  X509_REQ_set_pubkey(req.get(), key.get());
  if (!X509_REQ_sign(req.get(), key.get(), EVP_sha256())) return SslError("cannot sign CSR");
  Ptr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return BioString(bio.get());
}

CertInfo InspectX509(const void* opaque) {
  // OpenSSL's getters take non-const pointers but do not modify the certificate.
  X509* cert = const_cast<X509*>(static_cast<const X509*>(opaque));
  CertInfo info;
  info.common_name = NameEntry(X509_get_subject_name(cert), NID_commonName);
  info.issuer_cn = NameEntry(X509_get_issuer_name(cert), NID_commonName);
  Ptr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  Ptr<char> hex(bn ? BN_bn2hex(bn.get()) : nullptr);
  info.serial_hex = hex ? hex.get() : "";
  for (auto& c : info.serial_hex)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n)) {
    for (unsigned int i = 0; i < n; ++i) info.fingerprint += fmt::format("{:02x}", md[i]);
  }
  info.not_before_ms = AsnTimeMs(X509_get0_notBefore(cert));
  info.not_after_ms = AsnTimeMs(X509_get0_notAfter(cert));
  info.is_ca = X509_check_ca(cert) != 0;
  return info;
}

Result<CertInfo> InspectCertificate(const std::string& cert_pem) {
  VERGE_ASSIGN_OR_RETURN(auto cert, ParseCert(cert_pem));
  return InspectX509(cert.get());
}

Result<std::string> Fingerprint(const std::string& cert_pem) {
  VERGE_ASSIGN_OR_RETURN(auto cert, ParseCert(cert_pem));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_digest(cert.get(), EVP_sha256(), md, &n)) return SslError("cannot digest certificate");
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

Status VerifyIssuedBy(const std::string& ca_pem, const std::string& cert_pem, int64_t now_ms) {
  VERGE_ASSIGN_OR_RETURN(auto ca, ParseCert(ca_pem));
  VERGE_ASSIGN_OR_RETURN(auto cert, ParseCert(cert_pem));
  Ptr<X509_STORE> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  Ptr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(now_ms / 1000));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    return Error(Code::kPermissionDenied, "certificate does not verify: {}",
                 X509_verify_cert_error_string(err));
  }
  return Status::Ok();
}

Status CheckKeyMatchesCert(const std::string& private_key_pem, const std::string& cert_pem) {
  VERGE_ASSIGN_OR_RETURN(auto key, ParseKey(private_key_pem));
  VERGE_ASSIGN_OR_RETURN(auto cert, ParseCert(cert_pem));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return Error(Code::kInvalidArgument, "private key does not match certificate");
  }
  return Status::Ok();
}

Result<CertificateAuthority> CertificateAuthority::Create(const std::string& common_name,
                                                          int validity_days) {
  VERGE_ASSIGN_OR_RETURN(auto key, NewEcKey());
  VERGE_ASSIGN_OR_RETURN(auto cert, NewCert(common_name, validity_days));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  VERGE_RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE"));
  VERGE_RETURN_IF_ERROR(
      AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  VERGE_RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) return SslError("cannot sign CA");
  VERGE_ASSIGN_OR_RETURN(auto cert_pem, CertPem(cert.get()));
  VERGE_ASSIGN_OR_RETURN(auto key_pem, KeyPem(key.get()));
  return CertificateAuthority(std::move(cert_pem), std::move(key_pem));
}

Result<CertificateAuthority> CertificateAuthority::Load(const std::string& cert_pem,
                                                        const std::string& key_pem) {
  VERGE_RETURN_IF_ERROR(CheckKeyMatchesCert(key_pem, cert_pem));
  VERGE_ASSIGN_OR_RETURN(auto info, InspectCertificate(cert_pem));
  if (!info.is_ca) return Error(Code::kInvalidArgument, "certificate is not a CA");
  return CertificateAuthority(cert_pem, key_pem);
}

Result<std::string> CertificateAuthority::IssueClientCert(const std::string& csr_pem,
                                                          const std::string& node_name,
                                                          int validity_days) const {
  auto bio = MemBio(csr_pem);
  Ptr<X509_REQ> req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return SslError("cannot parse CSR");
  Ptr<EVP_PKEY> pub(X509_REQ_get_pubkey(req.get()));
  if (!pub) return SslError("CSR has no public key");
  if (X509_REQ_verify(req.get(), pub.get()) != 1) {
    ERR_clear_error();
    return Error(Code::kInvalidArgument, "CSR signature does not verify");
  }
  VERGE_ASSIGN_OR_RETURN(auto ca_key, ParseKey(key_pem_));
  VERGE_ASSIGN_OR_RETURN(auto ca_cert, ParseCert(cert_pem_));
  VERGE_ASSIGN_OR_RETURN(auto cert, NewCert(node_name, validity_days));
  ClampToIssuer(cert.get(), ca_cert.get());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  X509_set_pubkey(cert.get(), pub.get());
  VERGE_RETURN_IF_ERROR(
      AddExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  VERGE_RETURN_IF_ERROR(
      AddExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  VERGE_RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_ext_key_usage, "clientAuth"));
  VERGE_RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid"));
  if (!X509_sign(cert.get(), ca_key.get(), EVP_sha256()))
    return SslError("cannot sign certificate");
  return CertPem(cert.get());
}

Result<std::string> CertificateAuthority::IssueServerCert(
    const std::string& key_pem, const std::string& common_name,
    const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses,
    int validity_days) const {
  VERGE_ASSIGN_OR_RETURN(auto key, ParseKey(key_pem));
  VERGE_ASSIGN_OR_RETURN(auto ca_key, ParseKey(key_pem_));
  VERGE_ASSIGN_OR_RETURN(auto ca_cert, ParseCert(cert_pem_));
  VERGE_ASSIGN_OR_RETURN(auto cert, NewCert(common_name, validity_days));
  ClampToIssuer(cert.get(), ca_cert.get());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : ip_addresses) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  VERGE_RETURN_IF_ERROR(
      AddExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  VERGE_RETURN_IF_ERROR(
      AddExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  VERGE_RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth"));
  if (!san.empty()) {
    VERGE_RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_subject_alt_name, san.c_str()));
  }
  if (!X509_sign(cert.get(), ca_key.get(), EVP_sha256()))
    return SslError("cannot sign certificate");
  return CertPem(cert.get());
}

std::string RandomHex(size_t n) {
  std::vector<unsigned char> buf(n);
  RAND_bytes(buf.data(), static_cast<int>(n));
  std::string out;
  out.reserve(2 * n);
  for (unsigned char c : buf) out += fmt::format("{:02x}", c);
  return out;
}

std::string RandomToken(size_t n) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    unsigned char c;
    RAND_bytes(&c, 1);
    if (c < 252) out += kAlphabet[c % 36];  // 252 = 7*36: no modulo bias
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace verge::pki
