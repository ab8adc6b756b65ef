// PKI for the edge–cloud link: the cloud's certificate authority, node keys and CSRs,
// certificate issuance, verification and fingerprints. All keys are ECDSA P-256.
//
// Keys and certificates cross this interface as PEM strings; OpenSSL objects stay inside
// pki.cc. Thread-safety: free functions are thread-safe; CertificateAuthority is immutable
// after Load/Create and may be shared across threads (Issue* serialise nothing mutable).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace verge::pki {

struct KeyPair {
  std::string private_key_pem;  // PKCS#8
};

Result<KeyPair> GenerateKey();

// A PKCS#10 request with subject CN=common_name, signed by the key.
Result<std::string> MakeCsr(const std::string& private_key_pem, const std::string& common_name);

struct CertInfo {
  std::string common_name;
  std::string serial_hex;   // lowercase, no leading zeros
  std::string fingerprint;  // SHA-256 of the DER, lowercase hex
  std::string issuer_cn;
  int64_t not_before_ms = 0;
  int64_t not_after_ms = 0;
  bool is_ca = false;
};

Result<CertInfo> InspectCertificate(const std::string& cert_pem);

// The same for a certificate OpenSSL already parsed (a TLS peer's), without re-encoding it.
// `cert` is an X509*; the type stays opaque here so that callers need no OpenSSL headers.
CertInfo InspectX509(const void* cert);

// SHA-256 of the DER encoding, lowercase hex: the pin that bootstrap tokens carry.
Result<std::string> Fingerprint(const std::string& cert_pem);

// Checks that `cert_pem` is signed by `ca_pem`, and is within its validity period at `now_ms`.
Status VerifyIssuedBy(const std::string& ca_pem, const std::string& cert_pem, int64_t now_ms);

// Checks that the private key matches the certificate.
Status CheckKeyMatchesCert(const std::string& private_key_pem, const std::string& cert_pem);

class CertificateAuthority {
 public:
  // A new self-signed CA valid for `validity_days`.
  static Result<CertificateAuthority> Create(const std::string& common_name, int validity_days);
  static Result<CertificateAuthority> Load(const std::string& cert_pem, const std::string& key_pem);

  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }

  // Signs a node's CSR as a client certificate. The subject is replaced by CN=node_name
  // whatever the CSR asks; only the CSR's public key is taken, after its signature is checked.
  Result<std::string> IssueClientCert(const std::string& csr_pem, const std::string& node_name,
                                      int validity_days) const;

  // A server certificate for `key_pem` with the given DNS names and IP addresses as SANs.
  Result<std::string> IssueServerCert(const std::string& key_pem, const std::string& common_name,
                                      const std::vector<std::string>& dns_names,
                                      const std::vector<std::string>& ip_addresses,
                                      int validity_days) const;

 private:
  CertificateAuthority(std::string cert, std::string key)
      : cert_pem_(std::move(cert)), key_pem_(std::move(key)) {}
  std::string cert_pem_;
  std::string key_pem_;
};

// Cryptographically random bytes, as lowercase hex of 2*n characters.
std::string RandomHex(size_t n);
// Random string of `n` characters from [a-z0-9].
std::string RandomToken(size_t n);
std::string Sha256Hex(std::string_view data);
// Compares in time independent of where the strings differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace verge::pki
