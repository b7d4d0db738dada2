/**
 * An HTTP server that answers like HashiCorp Vault, or like OpenBao (`flavor: "openbao"`), for the
 * endpoints qsign uses, following the request and response shapes of their API documentation (PKI
 * secrets engine, token and AppRole auth), with real certificates issued underneath by the
 * embedded QSIGN CA:
 *
 * - `POST /v1/<mount>/issue/<role>`, `POST /v1/<mount>/sign/<role>`, `GET /v1/<mount>/ca_chain`
 * - `POST /v1/<mount>/roles/<role>` and `GET` of it: a role's `key_type` and `key_bits` decide
 *   the keys `issue` makes and the CSR keys `sign` accepts. Vault knows `rsa`, `ec`, `ed25519`
 *   and `any`; OpenBao (2.7) also `mldsa` with `key_bits` 44, 65 or 87, answering
 *   `private_key_type: "mldsa"` and a PKCS#8 ML-DSA key.
 * - `GET /v1/auth/token/lookup-self`, `POST /v1/auth/token/renew-self`,
 *   `POST /v1/auth/token/create`, `POST /v1/auth/token/revoke-self`
 * - `POST /v1/auth/approle/login`
 *
 * Errors come as Vault sends them, `{"errors": [...]}`: 400 for a bad request (unknown role, a
 * name the role does not allow), 403 "permission denied" for a missing or unknown token, 503
 * "Vault is sealed" while sealed.
 */
import { join } from "node:path";
import "reflect-metadata";
import { Pkcs10CertificateRequest } from "@peculiar/x509";
import { issueLeaf, PKI_FILES } from "../../../src/pki/ca.ts";
import { type KeyAlgorithm, keyAlgorithmOfSpki } from "../../../src/pki/keys.ts";
import { pemDecodeAll, pemEncodeAll } from "../../../src/pki/pem.ts";

export interface MockRole {
  profile: "server" | "client";
  /** Names this role may certify: exactly, or any subdomain. Empty: anything. */
  allowedDomains: string[];
  maxTtlSeconds: number;
  /**
   * The role's `key_type` and `key_bits`. Unset: `issue` makes ECDSA P-256 keys and `sign` takes
   * a CSR of any key type, as the default roles of these tests always did.
   */
  keyType?: "rsa" | "ec" | "ed25519" | "mldsa" | "any";
  keyBits?: number;
}

/** Which server the mock plays: the key types its roles know differ. */
export type MockFlavor = "vault" | "openbao";

export interface MockVaultOptions {
  /** The embedded CA directory (made by the PKI's init) that signs underneath. */
  caDir: string;
  /** Default `vault` (HashiCorp Vault: no ML-DSA). */
  flavor?: MockFlavor;
  mount?: string;
  roles?: Record<string, MockRole>;
  /** The token that is valid from the start, its remaining TTL and renewability. */
  rootToken?: { token: string; ttl: number; renewable: boolean };
  approle?: { roleId: string; secretId: string; tokenTtl: number };
  /** When set, authenticated requests must carry this `X-Vault-Namespace`. */
  namespace?: string;
}

/** One request as the mock saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  token: string | null;
  namespace: string | null;
  body: Record<string, unknown> | null;
}

interface TokenState {
  ttl: number;
  renewable: boolean;
  creationTtl: number;
}

const DEFAULT_ROLES: Record<string, MockRole> = {
  "qtls-server": {
    profile: "server",
    allowedDomains: ["qsign.local", "localhost"],
    maxTtlSeconds: 72 * 3600,
  },
  "qtls-client": { profile: "client", allowedDomains: ["qsign.local"], maxTtlSeconds: 72 * 3600 },
};

/** A running mock Vault; `await using` it to stop the server. */
export class MockVault implements AsyncDisposable {
  readonly requests: SeenRequest[] = [];
  readonly #tokens = new Map<string, TokenState>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #options: MockVaultOptions;
  readonly #roles: Record<string, MockRole>;
  #sealedFor = 0;

  constructor(options: MockVaultOptions) {
    this.#options = options;
    this.#roles = structuredClone(options.roles ?? DEFAULT_ROLES);
    const root = options.rootToken ?? { token: "hvs.mock-root", ttl: 0, renewable: false };
    this.#tokens.set(root.token, {
      ttl: root.ttl,
      renewable: root.renewable,
      creationTtl: root.ttl,
    });
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => this.#handle(request),
    );
  }

  /** `VAULT_ADDR` for this server. */
  get address(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  get rootToken(): string {
    return this.#options.rootToken?.token ?? "hvs.mock-root";
  }

  /** Answers the next `count` requests with 503 "Vault is sealed", as a sealed Vault does. */
  sealFor(count: number): void {
    this.#sealedFor = count;
  }

  /** The remaining TTL of a token, as lookup-self would report it. */
  tokenTtl(token: string): number | undefined {
    return this.#tokens.get(token)?.ttl;
  }

  /** Requests whose path ends with `suffix`. */
  seen(suffix: string): SeenRequest[] {
    return this.requests.filter((r) => r.path.endsWith(suffix));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const text = request.body ? await request.text() : "";
    let body: Record<string, unknown> | null = null;
    if (text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        return errors(400, ["failed to parse JSON input: invalid character"]);
      }
    }
    const token = request.headers.get("X-Vault-Token");
    const namespace = request.headers.get("X-Vault-Namespace");
    this.requests.push({ method: request.method, path: url.pathname, token, namespace, body });
    if (this.#sealedFor > 0) {
      this.#sealedFor--;
      return errors(503, ["Vault is sealed"]);
    }
    const mount = this.#options.mount ?? "pki";
    const path = url.pathname;
    if (request.method === "GET" && path === `/v1/${mount}/ca_chain`) {
      return new Response(await this.#caChain(), {
        headers: { "Content-Type": "application/pem-certificate-chain" },
      });
    }
    if (request.method === "POST" && path === "/v1/auth/approle/login") {
      return this.#appRoleLogin(body ?? {});
    }
    if (!token || !this.#tokens.has(token)) return errors(403, ["permission denied"]);
    if (this.#options.namespace !== undefined && namespace !== this.#options.namespace) {
      return errors(403, ["permission denied"]);
    }
    const state = this.#tokens.get(token)!;
    if (request.method === "GET" && path === "/v1/auth/token/lookup-self") {
      return json({
        data: {
          accessor: "mock-accessor",
          creation_ttl: state.creationTtl,
          display_name: "token",
          expire_time: state.ttl ? new Date(Date.now() + state.ttl * 1000).toISOString() : null,
          id: token,
          policies: ["default", "qtls"],
          renewable: state.renewable,
          ttl: state.ttl,
        },
      });
    }
    if (request.method === "POST" && path === "/v1/auth/token/renew-self") {
      if (!state.renewable) return errors(400, ["lease is not renewable"]);
      state.ttl = state.creationTtl;
      return json({
        auth: {
          client_token: token,
          policies: ["default", "qtls"],
          lease_duration: state.ttl,
          renewable: true,
        },
      });
    }
    if (request.method === "POST" && path === "/v1/auth/token/create") {
      return this.#createToken(body ?? {});
    }
    if (request.method === "POST" && path === "/v1/auth/token/revoke-self") {
      this.#tokens.delete(token);
      return new Response(null, { status: 204 });
    }
    const roleRoute = new RegExp(`^/v1/${mount}/roles/([^/]+)$`).exec(path);
    if (roleRoute && (request.method === "POST" || request.method === "PUT")) {
      return this.#writeRole(decodeURIComponent(roleRoute[1]), body ?? {});
    }
    if (roleRoute && request.method === "GET") {
      const role = this.#roles[decodeURIComponent(roleRoute[1])];
      if (!role) return new Response(null, { status: 404 });
      return json({ data: roleData(role) });
    }
    const issue = new RegExp(`^/v1/${mount}/(issue|sign)/([^/]+)$`).exec(path);
    if (request.method === "POST" && issue) {
      return await this.#issue(
        issue[1] as "issue" | "sign",
        decodeURIComponent(issue[2]),
        body ?? {},
      );
    }
    return errors(404, [`no handler for route "${path.slice(4)}". route entry not found.`]);
  }

  /**
   * Creates or updates a role as `bao write pki/roles/NAME key_type=… key_bits=…` does; the key
   * type is checked as each server checks it.
   */
  #writeRole(name: string, body: Record<string, unknown>): Response {
    const known = this.#flavor === "openbao"
      ? ["rsa", "ec", "ed25519", "mldsa", "any"]
      : ["rsa", "ec", "ed25519", "any"];
    const keyType = typeof body.key_type === "string" ? body.key_type : "rsa";
    if (!known.includes(keyType)) return errors(400, [`unknown key type ${keyType}`]);
    const bits = body.key_bits === undefined ? 0 : Number(body.key_bits);
    const allowedBits: Record<string, number[]> = {
      rsa: [0, 2048, 3072, 4096],
      ec: [0, 224, 256, 384, 521],
      ed25519: [0],
      mldsa: [44, 65, 87],
      any: [0],
    };
    if (!allowedBits[keyType].includes(bits)) {
      return errors(400, [
        `invalid key_bits ${bits} for key_type ${keyType}` +
        (keyType === "mldsa" ? ": use 44, 65 or 87" : ""),
      ]);
    }
    const previous = this.#roles[name];
    this.#roles[name] = {
      profile: body.client_flag === true && body.server_flag === false
        ? "client"
        : previous?.profile ?? "server",
      allowedDomains: typeof body.allowed_domains === "string"
        ? splitList(body.allowed_domains)
        : Array.isArray(body.allowed_domains)
        ? body.allowed_domains as string[]
        : previous?.allowedDomains ?? [],
      maxTtlSeconds: parseTtl(body.max_ttl) ?? previous?.maxTtlSeconds ?? 72 * 3600,
      keyType: keyType as MockRole["keyType"],
      keyBits: bits || (keyType === "ec" ? 256 : keyType === "rsa" ? 2048 : 0),
    };
    return new Response(null, { status: 204 });
  }

  get #flavor(): MockFlavor {
    return this.#options.flavor ?? "vault";
  }

  #appRoleLogin(body: Record<string, unknown>): Response {
    const approle = this.#options.approle;
    if (!approle) return errors(400, ['no handler for route "auth/approle/login"']);
    if (typeof body.role_id !== "string" || body.role_id === "") {
      return errors(400, ["missing role_id"]);
    }
    if (body.role_id !== approle.roleId || body.secret_id !== approle.secretId) {
      return errors(400, ["invalid role or secret ID"]);
    }
    const token = `hvs.approle-${crypto.randomUUID()}`;
    this.#tokens.set(token, {
      ttl: approle.tokenTtl,
      renewable: true,
      creationTtl: approle.tokenTtl,
    });
    return json({
      auth: {
        client_token: token,
        accessor: "mock-accessor",
        policies: ["default", "qtls"],
        token_policies: ["default", "qtls"],
        metadata: { role_name: "qtls" },
        lease_duration: approle.tokenTtl,
        renewable: true,
      },
    });
  }

  /** A child token with the requested `ttl` (Vault's default here: one hour) and renewability. */
  #createToken(body: Record<string, unknown>): Response {
    const ttl = parseTtl(body.ttl) ?? 3600;
    const renewable = body.renewable !== false;
    const token = `hvs.child-${crypto.randomUUID()}`;
    this.#tokens.set(token, { ttl, renewable, creationTtl: ttl });
    return json({
      auth: {
        client_token: token,
        accessor: "mock-accessor",
        policies: ["root"],
        token_policies: ["root"],
        lease_duration: ttl,
        renewable,
      },
    });
  }

  async #issue(
    kind: "issue" | "sign",
    roleName: string,
    body: Record<string, unknown>,
  ): Promise<Response> {
    const role = this.#roles[roleName];
    if (!role) return errors(400, [`unknown role: ${roleName}`]);
    const cn = body.common_name;
    if (typeof cn !== "string" || cn === "") {
      return errors(400, [
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
      ]);
    }
    const names = [cn, ...splitList(body.alt_names)];
    const refused = names.find((n) => !allowed(role, n));
    if (refused) return errors(400, [`common name ${refused} not allowed by this role`]);
    if (kind === "sign" && typeof body.csr !== "string") return errors(400, ['"csr" is empty']);
    if (kind === "issue" && body.private_key_format !== "pkcs8") {
      return errors(400, ["this mock answers only private_key_format=pkcs8"]);
    }
    const ttl = Math.min(parseTtl(body.ttl) ?? role.maxTtlSeconds, role.maxTtlSeconds);
    const csrDer = kind === "sign"
      ? pemDecodeAll(body.csr as string, "CERTIFICATE REQUEST")[0]
      : undefined;
    if (kind === "sign" && !csrDer) return errors(400, ["certificate request could not be parsed"]);
    const alg = roleKeyAlgorithm(role);
    if (kind === "issue" && alg === undefined) {
      return errors(400, [`this mock cannot generate keys of type ${role.keyType}`]);
    }
    if (csrDer && role.keyType !== undefined && role.keyType !== "any") {
      const csrAlg = keyAlgorithmOfSpki(
        new Uint8Array(new Pkcs10CertificateRequest(csrDer.slice()).publicKey.rawData),
      );
      if (csrAlg !== alg) {
        return errors(400, [
          `role requires keys of type ${role.keyType ?? "ec"} with ${role.keyBits ?? 256} bits; ` +
          `the CSR has ${csrAlg ?? "an unknown key"}`,
        ]);
      }
    }
    const issued = await issueLeaf({
      dir: this.#options.caDir,
      profile: role.profile,
      cn,
      sans: [
        // Vault and OpenBao put the common name among the SANs unless exclude_cn_from_sans.
        ...(body.exclude_cn_from_sans === true ? [] : [cn])
          .concat(splitList(body.alt_names).filter((n) => n !== cn))
          .map((n) => n.includes("@") ? `EMAIL:${n}` : `DNS:${n}`),
        ...splitList(body.ip_sans).map((n) => `IP:${n}`),
        ...splitList(body.uri_sans).map((n) => `URI:${n}`),
      ],
      ttlSeconds: ttl,
      alg,
      csrDer,
    });
    const [leaf] = pemDecodeAll(issued.certPem, "CERTIFICATE");
    const chain = pemDecodeAll(await this.#caChain(role.profile), "CERTIFICATE");
    const serial = issued.serial.replace(/(..)(?!$)/g, "$1:");
    return json({
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      data: {
        certificate: pemEncodeAll("CERTIFICATE", [leaf]).trim(),
        issuing_ca: pemEncodeAll("CERTIFICATE", chain.slice(0, 1)).trim(),
        ca_chain: chain.map((der) => pemEncodeAll("CERTIFICATE", [der]).trim()),
        ...(issued.keyPem
          ? { private_key: issued.keyPem.trim(), private_key_type: role.keyType ?? "ec" }
          : {}),
        serial_number: serial,
        expiration: Math.floor(issued.notAfter.getTime() / 1000),
      },
      wrap_info: null,
      warnings: null,
      auth: null,
    });
  }

  /** The issuing intermediate and the root, as PEM: the mount's default issuer is the server CA. */
  async #caChain(profile: "server" | "client" = "server"): Promise<string> {
    const intermediate = profile === "server" ? PKI_FILES.serverCaCert : PKI_FILES.clientCaCert;
    const dir = this.#options.caDir;
    return (await Deno.readTextFile(join(dir, intermediate))).trim() + "\n" +
      (await Deno.readTextFile(join(dir, PKI_FILES.rootCert))).trim() + "\n";
  }
}

/** The key a role makes, as the embedded CA names it (undefined: one this mock cannot make). */
function roleKeyAlgorithm(role: MockRole): KeyAlgorithm | undefined {
  const bits = role.keyBits ?? 256;
  switch (role.keyType ?? "ec") {
    case "ec":
      return bits === 384 ? "ecdsa-p384" : bits === 256 ? "ecdsa-p256" : undefined;
    case "mldsa":
      return ({ 44: "mldsa44", 65: "mldsa65", 87: "mldsa87" } as Record<number, KeyAlgorithm>)[
        bits
      ];
    case "ed25519":
      return "ed25519";
    case "rsa":
      return bits === 3072 ? "rsa-3072" : undefined;
    default:
      return undefined;
  }
}

/** A role as `GET /v1/<mount>/roles/<name>` answers it (the fields qsign's docs mention). */
function roleData(role: MockRole) {
  return {
    key_type: role.keyType ?? "ec",
    key_bits: role.keyBits ?? 256,
    allowed_domains: role.allowedDomains,
    allow_subdomains: true,
    max_ttl: role.maxTtlSeconds,
    server_flag: role.profile === "server",
    client_flag: role.profile === "client",
  };
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

function errors(status: number, messages: string[]): Response {
  return json({ errors: messages }, status);
}

function splitList(value: unknown): string[] {
  return typeof value === "string" ? value.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

function allowed(role: MockRole, name: string): boolean {
  if (role.allowedDomains.length === 0) return true;
  return role.allowedDomains.some((d) => name === d || name.endsWith(`.${d}`)) ||
    /^[\d.]+$/.test(name);
}

/** Vault's `ttl`: seconds as a number, or a Go duration string such as `86400s` or `24h`. */
function parseTtl(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value !== "string" || value === "") return undefined;
  const match = /^(\d+)([smh]?)$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * ({ "": 1, s: 1, m: 60, h: 3600 } as Record<string, number>)[match[2]];
}
