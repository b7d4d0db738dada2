/**
 * The PKI secrets engine of HashiCorp Vault and of OpenBao (its open fork, the same HTTP API)
 * over the documented API: token or AppRole login,
 * `X-Vault-Namespace`, a CA file for Vault's own TLS, `POST /v1/<mount>/issue/<role>` (Vault makes
 * the key), `POST /v1/<mount>/sign/<role>` (our key, e.g. in the HSM), `GET /v1/<mount>/ca_chain`,
 * and `renew-self` for a token close to expiry. The role decides the key: HashiCorp Vault makes
 * RSA, ECDSA and Ed25519 keys; OpenBao 2.7 and later also ML-DSA (`key_type=mldsa`, `key_bits`
 * 44, 65 or 87), which gives qsign post-quantum chains from a Vault-family PKI.
 *
 * Vault's own `{"errors": [...]}` texts reach the operator verbatim in a `VaultError`. Server errors
 * (5xx: sealed, standby, overloaded) and network failures are retried with exponential backoff
 * until a deadline; client errors (4xx: bad request, permission denied) are final, because asking
 * again gets the same answer.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { QsignError } from "../errors.ts";
import { parseSubjectAltName } from "../pki/certificate.ts";
import { type KeyAlgorithm, keyAlgorithmOfSpki } from "../pki/keys.ts";
import { pemDecodeAll, pemEncode } from "../pki/pem.ts";
import { readSecret } from "../secrets.ts";
import type { IssuedCertificate, Issuer, IssueRequest } from "./issuer.ts";

/** A secret reference (`file:///…`, `env:NAME`, `credential:NAME`) and where it was configured. */
export interface SecretRef {
  ref: string;
  /** The option or config field it came from, for error messages. */
  field: string;
}

/** How the client gets its `X-Vault-Token`. */
export type VaultAuth =
  | { method: "token"; token: SecretRef }
  | { method: "approle"; roleId: SecretRef; secretId: SecretRef; mount?: string };

/** How long to keep retrying server and network errors. */
export interface RetryPolicy {
  /** Give up once this much time has passed since the first attempt. */
  deadlineMs: number;
  /** Wait before the second attempt; doubled after each failure up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  deadlineMs: 60_000,
  initialDelayMs: 500,
  maxDelayMs: 8_000,
};

export interface VaultClientOptions {
  /** `VAULT_ADDR`, e.g. `https://vault.example.org:8200`. */
  address: string;
  auth: VaultAuth;
  /** `X-Vault-Namespace` (Vault Enterprise / HCP). */
  namespace?: string;
  /** PEM CA certificates that sign Vault's TLS certificate, when not in the system store. */
  caCertPem?: string;
  retry?: RetryPolicy;
  /** Renew a renewable token whose remaining TTL is below this. Default: two hours. */
  tokenRenewBelowSeconds?: number;
  /** Where informational messages go (token renewed, Vault warnings). */
  log?: (message: string) => void;
}

/** An error answer from Vault, or no answer at all (`status` undefined). */
export class VaultError extends QsignError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number | undefined,
    /** Vault's `errors` array verbatim, or the network failure. */
    readonly errors: string[],
    readonly attempts = 1,
  ) {
    const what = status === undefined ? "no response" : `HTTP ${status}`;
    const retried = attempts > 1 ? ` (gave up after ${attempts} attempts)` : "";
    super(`Vault ${method} ${path}: ${what}: ${errors.join("; ")}${retried}`);
  }

  /** True for answers worth asking again: server errors and no answer at all. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500;
  }
}

/** The `data` of Vault's issue and sign answers (fields this client uses). */
export interface VaultCertificateData {
  certificate: string;
  issuing_ca?: string;
  ca_chain?: string[];
  private_key?: string;
  private_key_type?: string;
  serial_number: string;
  /** Unix seconds; Vault sends a number (older versions a string). */
  expiration: number | string;
}

/** Certificate request parameters as Vault names them. */
export interface VaultCertificateParams {
  common_name: string;
  alt_names?: string;
  ip_sans?: string;
  uri_sans?: string;
  ttl?: string;
}

/** The parts of Vault's JSON answers this client reads. */
interface VaultAnswer {
  data?: Record<string, unknown>;
  auth?: { client_token?: unknown; lease_duration?: unknown };
  warnings?: unknown[] | null;
}

const DEFAULT_TOKEN_RENEW_BELOW = 2 * 3600;

/** A Vault HTTP API client. Close it (or `using` it) to release the TLS client. */
export class VaultClient implements Disposable {
  readonly #address: string;
  readonly #options: VaultClientOptions;
  readonly #retry: RetryPolicy;
  readonly #httpClient?: Deno.HttpClient;
  #token?: Promise<string>;

  constructor(options: VaultClientOptions) {
    this.#options = options;
    this.#address = options.address.replace(/\/+$/, "");
    this.#retry = options.retry ?? DEFAULT_RETRY;
    if (options.caCertPem) {
      this.#httpClient = Deno.createHttpClient({ caCerts: [options.caCertPem] });
    }
  }

  /** `POST /v1/<mount>/issue/<role>`: Vault generates the key pair and returns it (PKCS#8). */
  async issue(
    mount: string,
    role: string,
    params: VaultCertificateParams,
  ): Promise<VaultCertificateData> {
    const body = { ...params, format: "pem", private_key_format: "pkcs8" };
    return await this.#certificateRequest(`/v1/${mount}/issue/${encodeURIComponent(role)}`, body);
  }

  /** `POST /v1/<mount>/sign/<role>`: Vault signs our CSR; the key never leaves us. */
  async sign(
    mount: string,
    role: string,
    csrPem: string,
    params: VaultCertificateParams,
  ): Promise<VaultCertificateData> {
    const body = { ...params, csr: csrPem, format: "pem" };
    return await this.#certificateRequest(`/v1/${mount}/sign/${encodeURIComponent(role)}`, body);
  }

  /** `GET /v1/<mount>/ca_chain`: the default issuer's chain as PEM (an unauthenticated endpoint). */
  async caChain(mount: string): Promise<string> {
    return await this.#send("GET", `/v1/${mount}/ca_chain`, { token: null });
  }

  close(): void {
    this.#httpClient?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #certificateRequest(path: string, body: object): Promise<VaultCertificateData> {
    const token = await this.#authenticatedToken();
    const data = (await this.#sendJson("POST", path, { token, body })).data;
    if (typeof data?.certificate !== "string" || typeof data?.serial_number !== "string") {
      throw new VaultError("POST", path, 200, [
        "the answer has no data.certificate or data.serial_number",
      ]);
    }
    return data as unknown as VaultCertificateData;
  }

  /** The token for requests: read or logged in once, and renewed first if close to expiry. */
  #authenticatedToken(): Promise<string> {
    this.#token ??= this.#authenticate().catch((e) => {
      this.#token = undefined; // a failed login is not remembered: the next call tries again
      throw e;
    });
    return this.#token;
  }

  async #authenticate(): Promise<string> {
    const auth = this.#options.auth;
    // A fresh AppRole login token has its whole TTL ahead of it: nothing to renew.
    if (auth.method === "approle") return await this.#appRoleLogin(auth);
    const token = await readSecret(auth.token.ref, {
      label: "Vault token",
      field: auth.token.field,
    });
    // lookup-self also proves the token is valid before any certificate is asked for.
    const info = (await this.#sendJson("GET", "/v1/auth/token/lookup-self", { token })).data;
    const ttl = Number(info?.ttl ?? 0);
    const renewBelow = this.#options.tokenRenewBelowSeconds ?? DEFAULT_TOKEN_RENEW_BELOW;
    if (info?.renewable === true && ttl > 0 && ttl < renewBelow) {
      const renewed = await this.#sendJson("POST", "/v1/auth/token/renew-self", {
        token,
        body: {},
      });
      this.#options.log?.(
        `Vault token had ${ttl}s left; renewed for ${renewed.auth?.lease_duration}s`,
      );
    }
    return token;
  }

  async #appRoleLogin(auth: Extract<VaultAuth, { method: "approle" }>): Promise<string> {
    const [roleId, secretId] = await Promise.all([
      readSecret(auth.roleId.ref, { label: "AppRole role_id", field: auth.roleId.field }),
      readSecret(auth.secretId.ref, { label: "AppRole secret_id", field: auth.secretId.field }),
    ]);
    const path = `/v1/auth/${auth.mount ?? "approle"}/login`;
    const answer = await this.#sendJson("POST", path, {
      token: null,
      body: { role_id: roleId, secret_id: secretId },
    });
    const token = answer.auth?.client_token;
    if (typeof token !== "string" || token === "") {
      throw new VaultError("POST", path, 200, ["the answer has no auth.client_token"]);
    }
    return token;
  }

  async #sendJson(method: string, path: string, request: SendOptions): Promise<VaultAnswer> {
    const text = await this.#send(method, path, request);
    let answer: VaultAnswer;
    try {
      answer = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new VaultError(method, path, 200, [`the answer is not JSON: ${text.slice(0, 200)}`]);
    }
    for (const warning of answer.warnings ?? []) this.#options.log?.(`Vault warning: ${warning}`);
    return answer;
  }

  /**
   * One API call with retries; answers the response body. Throws `VaultError` with Vault's
   * `errors` at once for a 4xx, and for a 5xx or no answer once the next try would pass the deadline.
   */
  async #send(method: string, path: string, request: SendOptions): Promise<string> {
    const deadline = Date.now() + this.#retry.deadlineMs;
    let delay = this.#retry.initialDelayMs;
    let lastAnswer: VaultError | undefined;
    for (let attempt = 1;; attempt++) {
      const result = await this.#attempt(method, path, request, deadline, attempt);
      if (typeof result === "string") return result;
      if (!result.retryable) throw result;
      if (result.status !== undefined) lastAnswer = result;
      // The last attempt is cut off at the deadline; Vault's last answer ("Vault is sealed")
      // tells the operator more than that timeout does.
      const failure = result.status === undefined && lastAnswer
        ? new VaultError(method, path, lastAnswer.status, lastAnswer.errors, attempt)
        : result;
      // Jitter keeps a fleet of renewal timers from hitting a recovering Vault in step.
      const wait = Math.min(delay, this.#retry.maxDelayMs) * (0.5 + Math.random() / 2);
      if (Date.now() + wait >= deadline) throw failure;
      await new Promise((resolve) => setTimeout(resolve, wait));
      delay *= 2;
    }
  }

  async #attempt(
    method: string,
    path: string,
    request: SendOptions,
    deadline: number,
    attempt: number,
  ): Promise<string | VaultError> {
    const headers = new Headers({ "Accept": "application/json" });
    if (request.token) headers.set("X-Vault-Token", request.token);
    if (this.#options.namespace) headers.set("X-Vault-Namespace", this.#options.namespace);
    if (request.body !== undefined) headers.set("Content-Type", "application/json");
    try {
      const response = await fetch(`${this.#address}${path}`, {
        method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        client: this.#httpClient,
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      const text = await response.text();
      if (response.ok) return text;
      return new VaultError(method, path, response.status, vaultErrors(response, text), attempt);
    } catch (e) {
      return new VaultError(method, path, undefined, [describeNetworkError(e)], attempt);
    }
  }
}

interface SendOptions {
  /** The `X-Vault-Token`, or null for unauthenticated endpoints (login, ca_chain). */
  token: string | null;
  body?: object;
}

/** Vault's `errors` array verbatim, or what a proxy in front of Vault answered instead. */
function vaultErrors(response: Response, text: string): string[] {
  try {
    const errors = JSON.parse(text)?.errors;
    if (Array.isArray(errors) && errors.length > 0) return errors.map(String);
    if (Array.isArray(errors)) return [response.statusText || "no error message"];
  } catch {
    // Not Vault's JSON: a load balancer or proxy page; show its start.
  }
  const snippet = text.trim().slice(0, 200);
  return [snippet || response.statusText || "no error message"];
}

function describeNetworkError(e: unknown): string {
  if (e instanceof DOMException && e.name === "TimeoutError") return "timed out";
  const message = e instanceof Error ? e.message : String(e);
  const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : "";
  return `${message}${cause}`;
}

/** Where a `VaultIssuer` asks for certificates. */
export interface VaultIssuerOptions {
  /** The PKI secrets engine's mount path. Default `pki`. */
  mount?: string;
  /** The role per profile. Default `qtls-server` and `qtls-client`. */
  roles?: { server: string; client: string };
  /**
   * The key algorithm every issued leaf must have (`mldsa65` asks for an OpenBao role with
   * `key_type=mldsa key_bits=65`); a certificate with another key is refused, not stored.
   */
  keyAlgorithm?: KeyAlgorithm;
}

/** A Vault-family role's `key_type` and `key_bits` for a qsign key algorithm, where one exists. */
export function vaultRoleKeyParams(
  alg: KeyAlgorithm,
): { key_type: string; key_bits: number } | undefined {
  const params: Partial<Record<KeyAlgorithm, { key_type: string; key_bits: number }>> = {
    mldsa44: { key_type: "mldsa", key_bits: 44 },
    mldsa65: { key_type: "mldsa", key_bits: 65 },
    mldsa87: { key_type: "mldsa", key_bits: 87 },
    "ecdsa-p256": { key_type: "ec", key_bits: 256 },
    "ecdsa-p384": { key_type: "ec", key_bits: 384 },
    "rsa-3072": { key_type: "rsa", key_bits: 3072 },
    ed25519: { key_type: "ed25519", key_bits: 0 },
  };
  return params[alg];
}

export const DEFAULT_VAULT_ROLES = { server: "qtls-server", client: "qtls-client" } as const;

/**
 * Certificates from Vault or OpenBao PKI: `issue` when the PKI may make the key, `sign` for a
 * CSR. With HashiCorp Vault the chains are classical (RSA, ECDSA, Ed25519; the TLS engine still
 * uses the hybrid key exchange with them); an OpenBao role with `key_type=mldsa` issues ML-DSA
 * leaves, post-quantum end to end when its issuers are ML-DSA too.
 */
export class VaultIssuer implements Issuer {
  readonly kind = "vault";
  readonly mount: string;
  readonly roles: { server: string; client: string };

  readonly keyAlgorithm?: KeyAlgorithm;

  constructor(readonly client: VaultClient, options: VaultIssuerOptions = {}) {
    this.mount = options.mount ?? "pki";
    this.roles = options.roles ?? DEFAULT_VAULT_ROLES;
    this.keyAlgorithm = options.keyAlgorithm;
  }

  async issue(request: IssueRequest): Promise<IssuedCertificate> {
    const role = this.roles[request.profile];
    const params: VaultCertificateParams = {
      common_name: request.cn,
      ...vaultSanParams(request.sans),
      ttl: `${request.ttlSeconds}s`,
    };
    const data = request.csrDer
      ? await this.client.sign(
        this.mount,
        role,
        pemEncode("CERTIFICATE REQUEST", request.csrDer),
        params,
      )
      : await this.client.issue(this.mount, role, params);
    this.#checkLeafKey(role, data.certificate, request.csrDer);
    // Vault before 1.11 answers only issuing_ca; then the mount's chain is the authority.
    const chainPem = data.ca_chain?.length
      ? data.ca_chain.map(endWithNewline).join("")
      : await this.client.caChain(this.mount);
    return {
      certPem: endWithNewline(data.certificate),
      chainPem,
      keyPem: data.private_key === undefined ? undefined : endWithNewline(data.private_key),
      serial: data.serial_number.replaceAll(/[:-]/g, "").toLowerCase(),
      notAfter: new Date(Number(data.expiration) * 1000),
    };
  }

  /**
   * Refuses a leaf whose key is not the CSR's, or (for a key the PKI made) not of
   * `keyAlgorithm`: a role changed to another key type must not silently downgrade the chain.
   */
  #checkLeafKey(role: string, certificatePem: string, csrDer: Uint8Array | undefined): void {
    const [leaf] = pemDecodeAll(certificatePem, "CERTIFICATE");
    const where = `the certificate from ${this.mount}/${csrDer ? "sign" : "issue"}/${role}`;
    if (!leaf) throw new VaultKeyMismatchError(`${where} is not a PEM certificate`);
    const spki = new Uint8Array(
      new x509.X509Certificate(leaf.slice()).publicKey.rawData,
    );
    if (csrDer) {
      const requested = new Uint8Array(
        new x509.Pkcs10CertificateRequest(csrDer.slice()).publicKey.rawData,
      );
      if (!sameBytes(spki, requested)) {
        throw new VaultKeyMismatchError(`${where} certifies another key than the CSR's`);
      }
      return;
    }
    if (this.keyAlgorithm === undefined) return;
    const got = keyAlgorithmOfSpki(spki) ?? "an unknown key type";
    if (got === this.keyAlgorithm) return;
    const wanted = vaultRoleKeyParams(this.keyAlgorithm);
    const fix = wanted
      ? `: set the role's key_type=${wanted.key_type} key_bits=${wanted.key_bits} ` +
        `(bao write ${this.mount}/roles/${role} key_type=${wanted.key_type} ` +
        `key_bits=${wanted.key_bits} ...)${
          wanted.key_type === "mldsa" ? "; ML-DSA needs OpenBao 2.7 or later" : ""
        }`
      : "";
    throw new VaultKeyMismatchError(
      `${where} has a ${got} key, not ${this.keyAlgorithm}; it was not stored${fix}`,
    );
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** A certificate whose key is not what was asked for (the role's key type, the CSR's key). */
export class VaultKeyMismatchError extends QsignError {}

/** Splits SANs (`DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`) into Vault's request fields. */
export function vaultSanParams(
  sans: string[],
): Pick<VaultCertificateParams, "alt_names" | "ip_sans" | "uri_sans"> {
  const fields = { alt_names: [] as string[], ip_sans: [] as string[], uri_sans: [] as string[] };
  for (const san of sans.map(parseSubjectAltName)) {
    const field = san.type === "ip" ? "ip_sans" : san.type === "url" ? "uri_sans" : "alt_names";
    fields[field].push(san.value);
  }
  return Object.fromEntries(
    Object.entries(fields).filter(([, values]) => values.length).map(([k, v]) => [k, v.join(",")]),
  );
}

function endWithNewline(pem: string): string {
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}
