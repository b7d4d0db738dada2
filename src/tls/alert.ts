/**
 * TLS alerts (RFC 8446 §6) and the errors that carry them.
 *
 * Inside the engine, anything wrong with peer input throws `TlsAlert` naming the alert to send;
 * the connection catches it, sends the alert, closes, and surfaces a `TlsError` to the user.
 */
import { QsignError } from "../errors.ts";
import type { ClientOffer } from "./offer.ts";

/** Alert descriptions by name (RFC 8446 §6 and the registry). */
export const ALERTS = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_canceled: 90,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  unknown_psk_identity: 115,
  certificate_required: 116,
  /** RFC 9846: an error no more specific alert describes. */
  general_error: 117,
  no_application_protocol: 120,
  /** RFC 9849 (Encrypted Client Hello). */
  ech_required: 121,
} as const;

export type AlertName = keyof typeof ALERTS;

const NAMES = new Map<number, AlertName>(
  Object.entries(ALERTS).map(([name, code]) => [code, name as AlertName]),
);

/** The alert name for a wire code; unknown codes are named `alert_N`. */
export function alertName(code: number): AlertName | `alert_${number}` {
  return NAMES.get(code) ?? `alert_${code}`;
}

/**
 * What a received alert says about us (RFC 8446 §6.2), for logs: the peer names its reason only
 * by the code.
 */
const RECEIVED_MEANINGS: Partial<Record<AlertName, string>> = {
  close_notify: "the peer closed the connection",
  unexpected_message: "the peer received a message it did not expect from us",
  bad_record_mac: "the peer could not authenticate a record of ours",
  record_overflow: "the peer received a record of ours that was too long",
  handshake_failure: "the peer found no acceptable set of security parameters",
  bad_certificate: "the peer found our certificate corrupt or its signatures bad",
  unsupported_certificate: "the peer does not support the type of our certificate",
  certificate_revoked: "the peer says our certificate was revoked",
  certificate_expired: "the peer says our certificate has expired or is not yet valid",
  certificate_unknown: "the peer refused our certificate",
  illegal_parameter: "the peer found a field of ours out of range or inconsistent",
  unknown_ca: "the peer does not trust the CA of our certificate chain",
  access_denied: "the peer's access policy refused us",
  decode_error: "the peer could not parse a message of ours",
  decrypt_error: "the peer could not verify a signature or Finished of ours",
  protocol_version: "the peer does not support the protocol version we offered",
  insufficient_security: "the peer requires stronger parameters than we offered",
  internal_error: "the peer failed for a reason unrelated to us",
  inappropriate_fallback: "the peer detected a version fallback",
  user_canceled: "the peer canceled the handshake",
  missing_extension: "the peer missed an extension it requires from us",
  unsupported_extension: "the peer received an extension from us it did not ask for",
  unrecognized_name: "the peer has no server by the name we sent",
  bad_certificate_status_response: "the peer refused our certificate status response",
  unknown_psk_identity: "the peer does not know the PSK we offered",
  certificate_required: "the peer requires a client certificate and we sent none",
  general_error: "the peer failed with an error it does not name",
  no_application_protocol: "the peer supports none of the ALPN protocols we offered",
  ech_required: "the peer requires Encrypted Client Hello",
};

/** A log text for an alert received from the peer. */
export function receivedAlertMeaning(alert: AlertName | `alert_${number}`): string {
  return RECEIVED_MEANINGS[alert as AlertName] ?? `the peer sent an unregistered alert`;
}

/** Internal: "abort this connection with `alert`". Thrown by the codec and the handshakes. */
export class TlsAlert extends Error {
  constructor(readonly alert: AlertName, readonly reason: string) {
    super(`${alert}: ${reason}`);
    this.name = "TlsAlert";
  }
}

/** Internal: the peer sent a fatal alert (or closed the transport mid-handshake). */
export class PeerAlert extends Error {
  constructor(readonly alert: AlertName | `alert_${number}`) {
    super(`peer sent alert ${alert}`);
    this.name = "PeerAlert";
  }
}

/** Internal: the transport ended (EOF or reset) where TLS expected more. */
export class TransportClosed extends Error {
  constructor(what: string, options?: ErrorOptions) {
    super(`connection closed ${what}`, options);
    this.name = "TransportClosed";
  }
}

/**
 * Why a connection failed, as the user sees it: `alert` is what was sent (`sent: true`) or
 * received (`sent: false`); `timeout` and `connection_closed` are failures with no alert.
 */
export type TlsFailure = AlertName | `alert_${number}` | "timeout" | "connection_closed";

/** A TLS connection failed. `peer` is the remote address (`host:port`) when known. */
export class TlsError extends QsignError {
  /** Why, in words: ours for an alert we sent, the alert's meaning for one we received. */
  readonly reason: string;

  constructor(
    readonly alert: TlsFailure,
    reason: string,
    readonly sent: boolean,
    readonly peer?: string,
    options?: ErrorOptions,
  ) {
    reason ||= !sent && alert !== "timeout" && alert !== "connection_closed"
      ? receivedAlertMeaning(alert)
      : "";
    super(
      `${peer ? `${peer}: ` : ""}${
        alert === "timeout" || alert === "connection_closed"
          ? reason
          : `${sent ? "sent" : "received"} alert ${alert}${reason ? ` (${reason})` : ""}`
      }`,
      1,
      options,
    );
    this.reason = reason;
  }
}

/**
 * The handshake failed. For a refused classical-only client, `clientOffer` records what it
 * offered so the daemon can log it.
 */
export class TlsHandshakeError extends TlsError {
  clientOffer?: ClientOffer;
  /**
   * Server side: how far the client got. `connect`: it sent no byte (a load balancer's TCP
   * check); `client_hello`: its ClientHello never arrived whole; `handshake`: later.
   */
  phase?: HandshakePhase;
}

/** How far a failed server handshake got; see `TlsHandshakeError.phase`. */
export type HandshakePhase = "connect" | "client_hello" | "handshake";
