/** Wire constants of TLS 1.3 (RFC 8446 §4 and §B.3, plus the registries for extensions). */

export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
} as const;

export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

export const ExtensionType = {
  server_name: 0,
  max_fragment_length: 1,
  status_request: 5,
  supported_groups: 10,
  signature_algorithms: 13,
  use_srtp: 14,
  heartbeat: 15,
  application_layer_protocol_negotiation: 16,
  signed_certificate_timestamp: 18,
  client_certificate_type: 19,
  server_certificate_type: 20,
  padding: 21,
  record_size_limit: 28,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  oid_filters: 48,
  post_handshake_auth: 49,
  signature_algorithms_cert: 50,
  key_share: 51,
} as const;

export const TLS13 = 0x0304;
export const TLS12 = 0x0303;
/** SSL 3.0: a hello whose legacy_version is this or lower is refused (RFC 8446 D.5). */
export const SSL3 = 0x0300;

/** psk_key_exchange_modes: qsign only does psk_dhe_ke (a resumed handshake still runs the KEM). */
export const PSK_DHE_KE = 1;

/** The ServerHello.random that marks a HelloRetryRequest: SHA-256("HelloRetryRequest"). */
export const HELLO_RETRY_REQUEST_RANDOM = new Uint8Array([
  0xcf,
  0x21,
  0xad,
  0x74,
  0xe5,
  0x9a,
  0x61,
  0x11,
  0xbe,
  0x1d,
  0x8c,
  0x02,
  0x1e,
  0x65,
  0xb8,
  0x91,
  0xc2,
  0xa2,
  0x11,
  0x16,
  0x7a,
  0xbb,
  0x8c,
  0x5e,
  0x07,
  0x9e,
  0x09,
  0xe2,
  0xc8,
  0xa8,
  0x33,
  0x9c,
]);

/** Largest TLSPlaintext fragment (2^14) and the extra a TLSCiphertext may carry (RFC 8446 §5.2). */
export const MAX_PLAINTEXT = 16384;
export const MAX_CIPHERTEXT_EXPANSION = 256;

/**
 * True for the GREASE values {0x0a0a, 0x1a1a, …, 0xfafa} (RFC 8701) that clients put among
 * groups, schemes, suites, versions and extensions to keep servers tolerant.
 */
export function isGrease(code: number): boolean {
  return (code & 0xff) === code >> 8 && (code & 0x0f) === 0x0a;
}
