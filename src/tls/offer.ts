/**
 * What a client offered in its ClientHello, as the server saw it. A module of its own so that
 * alerts (which carry it on a refused handshake) and configuration both depend on it without
 * depending on each other.
 */
/** What the client offered, as the server saw it (for logs and refusals). */
export interface ClientOffer {
  groups: string[];
  keyShares: string[];
  signatureSchemes: string[];
  cipherSuites: string[];
  /** Whether any offered group is post-quantum. */
  pq: boolean;
}
