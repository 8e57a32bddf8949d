"""dccsim's test PKI.

- ``smki``: SMKI certificates in the GBCS profile (organisation, device, CA), reading their
  EUI / role / key usage back, and a field-by-field profile check.
- ``dccki``: the separate TLS PKI of DCC Gateway Connections and the ssl contexts using it.
- ``keystore``: certificates and private keys on disk by (EUI-64, key usage).
- ``devpki``: the development PKI behind ``dccsim pki init`` (CAs, the DCC's own identities,
  participants' bundles, emulated devices' credentials).
- ``files``: atomic, permission-aware reading and writing of certificates and keys.
- ``external``: importing DCC's ZAZ1 and RTDS test key sets (legacy: expiry not enforced).
- ``crl``: the revocation register and a CRL per CA; ``revocation``: ``dccsim pki revoke``.
- ``bench``: how fast device credentials are issued.
"""
