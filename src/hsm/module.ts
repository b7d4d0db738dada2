/**
 * A loaded PKCS#11 module (Luna's libCryptoki2_64.so in production, SoftHSM2 in tests) through
 * pkcs11js, plus `HsmError`: every PKCS#11 failure names the CKR code, the call, the module and
 * the token, so an operator can tell a wrong PIN from a pulled cable.
 *
 * A module is loaded once per process and shared: PKCS#11 state (initialisation, login) belongs
 * to the process, so two pools on one library must not initialise or finalise it behind each
 * other's back.
 */
import type * as Pkcs11 from "pkcs11js";
import { QsignError } from "../errors.ts";
import { LUNA_MODULE_PATH } from "./options.ts";

/** SoftHSM2's PKCS#11 library (Debian `softhsm2`), used by the tests. */
export const SOFTHSM_MODULE_PATH = "/usr/lib/softhsm/libsofthsm2.so";

/**
 * PKCS#11 3.2 numbers that pkcs11js 2.1.7 (built on the 2.40 headers) does not define. They pass
 * through pkcs11js unchanged because mechanisms and attributes are plain numbers there.
 */
export const CKM_ML_DSA_KEY_PAIR_GEN = 0x1c;
export const CKM_ML_DSA = 0x1d;
export const CKK_ML_DSA = 0x4a;
export const CKA_PARAMETER_SET = 0x61d;
export const CKP_ML_DSA_44 = 1;
export const CKP_ML_DSA_65 = 2;
export const CKP_ML_DSA_87 = 3;
/** Slot flag (CK_SLOT_INFO) that pkcs11js does not export. */
const CKF_TOKEN_PRESENT = 0x1;
/** Session states (PKCS#11 §5.7) in which the user is logged in; pkcs11js does not export them. */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

/** The pkcs11js binding (constants and the `PKCS11` class). */
export type Pkcs11Binding = typeof Pkcs11;
/** A PKCS#11 handle as pkcs11js gives it: the native CK_ULONG in a Buffer. */
export type Handle = Pkcs11.Handle;

/** What the CKR codes an operator is likely to meet mean, and what to do about them. */
const CKR_HINTS: Record<string, string> = {
  CKR_PIN_INCORRECT: "wrong PIN (check --hsm-pin); repeated attempts may lock the token",
  CKR_PIN_LOCKED: "the user PIN is locked: unlock it with the SO PIN",
  CKR_PIN_EXPIRED: "the PIN has expired: set a new one",
  CKR_PIN_LEN_RANGE: "the PIN has the wrong length",
  CKR_TOKEN_NOT_PRESENT: "the token is not present (HSM unreachable or removed)",
  CKR_DEVICE_REMOVED: "the HSM was removed or the connection to it was lost",
  CKR_DEVICE_ERROR: "the HSM reported a device error",
  CKR_MECHANISM_INVALID: "the module does not offer this mechanism for this token",
  CKR_KEY_TYPE_INCONSISTENT: "the key's type does not fit the mechanism",
  CKR_USER_NOT_LOGGED_IN: "the session is not logged in",
  CKR_CRYPTOKI_NOT_INITIALIZED: "the module is not initialised (it was finalised underneath us)",
};

/** Where a failed call went, for the error message. */
export interface HsmErrorContext {
  /** The PKCS#11 function or qsign operation, e.g. `C_Login`, `find key`. */
  operation: string;
  module: string;
  /** The token label, when known. */
  token?: string;
  slot?: number;
}

/**
 * A PKCS#11 or token problem. `code` is the CKR name (`CKR_PIN_INCORRECT`) when the module
 * returned one; it is undefined for problems qsign found itself (no such key, no such token).
 * Messages never contain PINs or key material.
 */
export class HsmError extends QsignError {
  readonly code?: string;
  readonly operation: string;
  readonly module: string;
  readonly token?: string;
  readonly slot?: number;

  constructor(
    context: HsmErrorContext & { code?: string; problem?: string },
    options?: ErrorOptions,
  ) {
    const where = [
      context.token !== undefined ? `token "${context.token}"` : "",
      context.slot !== undefined ? `slot ${context.slot}` : "",
      `module ${context.module}`,
    ].filter(Boolean).join(", ");
    const hint = context.code ? CKR_HINTS[context.code] : undefined;
    const what = [context.code, context.problem ?? hint].filter(Boolean).join(": ");
    super(`HSM ${context.operation} failed (${where}): ${what}`, 1, options);
    this.code = context.code;
    this.operation = context.operation;
    this.module = context.module;
    this.token = context.token;
    this.slot = context.slot;
  }
}

/** A token selector: by label (preferred: slot numbers can change) or by slot number. */
export type TokenSelector = { label: string } | { slot: number };

/** What `C_GetSlotInfo`/`C_GetTokenInfo` tell about one slot. */
export interface SlotDescription {
  slot: number;
  description: string;
  tokenPresent: boolean;
  /** Only when a token is present. */
  token?: {
    label: string;
    manufacturer: string;
    model: string;
    serial: string;
    initialized: boolean;
    loginRequired: boolean;
    userPinLocked: boolean;
    /** The module lists CKM_ML_DSA for this token. */
    mlDsa: boolean;
  };
}

/** A found token: its slot handle for pkcs11js and its numbers for messages. */
export interface TokenLocation {
  slotHandle: Handle;
  slot: number;
  label: string;
  loginRequired: boolean;
}

/** The slot number inside a pkcs11js handle (a native-endian CK_ULONG). */
export function handleNumber(handle: Handle): number {
  return Number(handle.readBigUInt64LE(0));
}

/** The CKR name carried by a pkcs11js error, if it is one. */
function ckrName(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /^(CKR_\w+)/.exec(error.message);
  if (match) return match[1];
  const code = (error as { code?: unknown }).code;
  return error.name === "Pkcs11Error" && typeof code === "number"
    ? `CKR 0x${code.toString(16)}`
    : undefined;
}

/** pkcs11js's text fields are blank-padded to a fixed width. */
function trimPadded(text: string): string {
  return text.replace(/[\s\0]+$/, "");
}

let bindingPromise: Promise<Pkcs11Binding> | undefined;

async function loadBinding(modulePath: string): Promise<Pkcs11Binding> {
  bindingPromise ??= import("pkcs11js").then((m) => m.default as Pkcs11Binding);
  try {
    return await bindingPromise;
  } catch (e) {
    bindingPromise = undefined;
    const denied = e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied;
    throw new HsmError({
      operation: "load pkcs11js",
      module: modulePath,
      problem: denied
        ? "loading the pkcs11js native addon needs --allow-ffi"
        : `cannot load the pkcs11js native addon (run scripts/setup.sh to build it): ${
          e instanceof Error ? e.message : e
        }`,
    }, { cause: e });
  }
}

const loaded = new Map<string, Promise<Pkcs11Module>>();

/**
 * One PKCS#11 library, initialised once for the whole process and reference-counted: `open`
 * twice with one path gives the same object, and the library is finalised when the last user
 * calls `release`.
 */
export class Pkcs11Module {
  /** Bumped by every `reinitialize`: handles from an older generation are dead. */
  #generation = 0;
  #users = 1;
  #inFlight = 0;
  #idle: (() => void)[] = [];

  private constructor(
    readonly path: string,
    readonly binding: Pkcs11Binding,
    private readonly api: Pkcs11.PKCS11,
  ) {}

  /** Loads and initialises the module at `path`, or shares the already loaded one. */
  static open(path: string = LUNA_MODULE_PATH): Promise<Pkcs11Module> {
    const existing = loaded.get(path);
    if (existing) {
      return existing.then((module) => {
        module.#users++;
        return module;
      });
    }
    const opening = Pkcs11Module.#load(path);
    loaded.set(path, opening);
    opening.catch(() => loaded.delete(path));
    return opening;
  }

  static async #load(path: string): Promise<Pkcs11Module> {
    const binding = await loadBinding(path);
    const api = new binding.PKCS11();
    try {
      api.load(path);
    } catch (e) {
      throw new HsmError({
        operation: "load",
        module: path,
        problem: `cannot load the PKCS#11 library: ${e instanceof Error ? e.message : e}`,
      }, { cause: e });
    }
    const module = new Pkcs11Module(path, binding, api);
    module.#initialize();
    return module;
  }

  /** The generation of the current initialisation (see `reinitialize`). */
  get generation(): number {
    return this.#generation;
  }

  #initialize(): void {
    try {
      // OS locking: pkcs11js runs C_Sign(Async) on worker threads, so the library must lock.
      this.api.C_Initialize({ flags: this.binding.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (ckrName(e) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
        throw this.error({ operation: "C_Initialize" }, e);
      }
    }
  }

  /**
   * Finalises and initialises the library again: the way back after a device was removed (a
   * SoftHSM token whose directory vanished stays broken until then; Luna documents the same
   * for a lost HSM). Every session of every user dies, so it is skipped when someone already
   * reinitialised since `seenGeneration`, and it waits for running asynchronous calls to end.
   */
  async reinitialize(seenGeneration: number): Promise<void> {
    if (seenGeneration !== this.#generation) return;
    while (this.#inFlight > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    if (seenGeneration !== this.#generation) return;
    this.#generation++;
    try {
      this.api.C_Finalize();
    } catch {
      // Already broken or not initialised: initialising below is what matters.
    }
    this.#initialize();
  }

  /** Drops one reference; the last one finalises the library. */
  release(): void {
    if (--this.#users > 0) return;
    loaded.delete(this.path);
    try {
      this.api.C_Finalize();
    } catch {
      // The process is giving the library up; nothing to recover.
    }
  }

  /** Builds an `HsmError` for a failed call. */
  error(context: Omit<HsmErrorContext, "module">, cause: unknown): HsmError {
    if (cause instanceof HsmError) return cause;
    const code = ckrName(cause);
    return new HsmError({
      ...context,
      module: this.path,
      code,
      problem: code ? undefined : cause instanceof Error ? cause.message : String(cause),
    }, { cause });
  }

  /**
   * Runs synchronous pkcs11js calls, turning any failure into an `HsmError` that names the
   * PKCS#11 function that failed (pkcs11js reports it) and `where`.
   */
  call<T>(where: Omit<HsmErrorContext, "module" | "operation">, fn: (api: Pkcs11.PKCS11) => T): T {
    try {
      return fn(this.api);
    } catch (e) {
      throw this.error({ ...where, operation: pkcs11Function(e) ?? "call" }, e);
    }
  }

  /** Like `call` for pkcs11js's asynchronous calls; `reinitialize` waits for these to end. */
  async callAsync<T>(
    where: Omit<HsmErrorContext, "module" | "operation">,
    fn: (api: Pkcs11.PKCS11) => Promise<T>,
  ): Promise<T> {
    this.#inFlight++;
    try {
      return await fn(this.api);
    } catch (e) {
      throw this.error({ ...where, operation: pkcs11Function(e) ?? "call" }, e);
    } finally {
      if (--this.#inFlight === 0) { for (const resolve of this.#idle.splice(0)) resolve(); }
    }
  }

  /** Every slot with its token, if any. */
  slots(): SlotDescription[] {
    const b = this.binding;
    return this.call({}, (api) =>
      api.C_GetSlotList(false).map((handle) => {
        const info = api.C_GetSlotInfo(handle);
        const present = (info.flags & CKF_TOKEN_PRESENT) !== 0;
        const slot: SlotDescription = {
          slot: handleNumber(handle),
          description: trimPadded(info.slotDescription),
          tokenPresent: present,
        };
        if (present) {
          const t = api.C_GetTokenInfo(handle);
          slot.token = {
            label: trimPadded(t.label),
            manufacturer: trimPadded(t.manufacturerID),
            model: trimPadded(t.model),
            serial: trimPadded(t.serialNumber),
            initialized: (t.flags & b.CKF_TOKEN_INITIALIZED) !== 0,
            loginRequired: (t.flags & b.CKF_LOGIN_REQUIRED) !== 0,
            userPinLocked: (t.flags & b.CKF_USER_PIN_LOCKED) !== 0,
            mlDsa: api.C_GetMechanismList(handle).includes(CKM_ML_DSA),
          };
        }
        return slot;
      }));
  }

  /** Finds the token by label or slot number. Throws `HsmError` naming what is there instead. */
  findToken(selector: TokenSelector): TokenLocation {
    const b = this.binding;
    const wanted = "label" in selector ? `token "${selector.label}"` : `slot ${selector.slot}`;
    return this.call({}, (api) => {
      const seen: string[] = [];
      for (const handle of api.C_GetSlotList(true)) {
        const slot = handleNumber(handle);
        const info = api.C_GetTokenInfo(handle);
        const label = trimPadded(info.label);
        if ((info.flags & b.CKF_TOKEN_INITIALIZED) === 0) continue;
        seen.push(`"${label}" (slot ${slot})`);
        if ("label" in selector ? label === selector.label : slot === selector.slot) {
          return {
            slotHandle: handle,
            slot,
            label,
            loginRequired: (info.flags & b.CKF_LOGIN_REQUIRED) !== 0,
          };
        }
      }
      throw new HsmError({
        operation: "find token",
        module: this.path,
        ...("label" in selector ? { token: selector.label } : { slot: selector.slot }),
        problem: `no initialised ${wanted}; present: ${seen.join(", ") || "none"}`,
      });
    });
  }

  /** The mechanisms the module offers for the token's slot. */
  mechanisms(token: TokenLocation): Set<number> {
    return new Set(
      this.call(
        { token: token.label, slot: token.slot },
        (api) => api.C_GetMechanismList(token.slotHandle),
      ),
    );
  }

  /** Opens a session and logs the user in (a login already held by the process is fine). */
  openSession(token: TokenLocation, pin: string | undefined, { readWrite = false } = {}): Handle {
    const b = this.binding;
    const where = { token: token.label, slot: token.slot };
    const session = this.call(where, (api) =>
      api.C_OpenSession(
        token.slotHandle,
        b.CKF_SERIAL_SESSION | (readWrite ? b.CKF_RW_SESSION : 0),
      ));
    try {
      if (token.loginRequired) this.login(token, session, pin);
      return session;
    } catch (e) {
      this.closeSession(session);
      throw e;
    }
  }

  /**
   * Logs the user in on `session`. PKCS#11 keeps one login per token for the whole process,
   * so a second session finds it already there (CKR_USER_ALREADY_LOGGED_IN is success).
   */
  login(token: TokenLocation, session: Handle, pin: string | undefined): void {
    const where = { token: token.label, slot: token.slot };
    if (pin === undefined) {
      throw new HsmError({
        ...where,
        operation: "C_Login",
        module: this.path,
        problem: "the token requires a PIN (--hsm-pin file:///path, env:NAME or prompt)",
      });
    }
    try {
      this.api.C_Login(session, this.binding.CKU_USER, pin);
    } catch (e) {
      if (ckrName(e) !== "CKR_USER_ALREADY_LOGGED_IN") {
        throw this.error({ ...where, operation: "C_Login" }, e);
      }
    }
  }

  /** Whether `session` is alive and logged in, by asking the token; throws `HsmError` if not. */
  checkSession(token: TokenLocation, session: Handle): void {
    const where = { token: token.label, slot: token.slot };
    const info = this.call(where, (api) => {
      api.C_GetTokenInfo(token.slotHandle);
      return api.C_GetSessionInfo(session);
    });
    const loggedIn = info.state === CKS_RO_USER_FUNCTIONS || info.state === CKS_RW_USER_FUNCTIONS;
    if (token.loginRequired && !loggedIn) {
      throw new HsmError({
        ...where,
        operation: "health check",
        module: this.path,
        code: "CKR_USER_NOT_LOGGED_IN",
      });
    }
  }

  /** Closes a session, ignoring failures: it is being given up, usually because it is dead. */
  closeSession(session: Handle): void {
    try {
      this.api.C_CloseSession(session);
    } catch {
      // A dead session cannot be closed more.
    }
  }
}

/** The PKCS#11 function pkcs11js says failed (e.g. `C_Login`). */
function pkcs11Function(error: unknown): string | undefined {
  const method = (error as { method?: unknown } | undefined)?.method;
  return typeof method === "string" && method !== "" ? method : undefined;
}

/**
 * CKR codes after which a session or the whole connection is gone, rather than one operation
 * being wrong. SoftHSM2 reports a token whose directory disappeared as CKR_OBJECT_HANDLE_INVALID
 * (the key is gone) and CKR_GENERAL_ERROR (from C_GetTokenInfo), so those count too.
 */
const CONNECTION_LOST = new Set([
  "CKR_DEVICE_REMOVED",
  "CKR_DEVICE_ERROR",
  "CKR_DEVICE_MEMORY",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_TOKEN_NOT_RECOGNIZED",
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_SESSION_COUNT",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
  "CKR_SLOT_ID_INVALID",
  "CKR_GENERAL_ERROR",
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_HANDLE_INVALID",
]);

/** CKR codes that retrying would make worse (a PIN counter running down to a locked token). */
const NEVER_RETRY = new Set([
  "CKR_PIN_INCORRECT",
  "CKR_PIN_LOCKED",
  "CKR_PIN_EXPIRED",
  "CKR_PIN_INVALID",
  "CKR_PIN_LEN_RANGE",
]);

/** Whether `error` means the token or module connection was lost (reconnect), not a bad call. */
export function isConnectionLoss(error: unknown): boolean {
  return error instanceof HsmError && error.code !== undefined && CONNECTION_LOST.has(error.code);
}

/** Whether retrying after `error` risks locking the token. */
export function isPinFailure(error: unknown): boolean {
  return error instanceof HsmError && error.code !== undefined && NEVER_RETRY.has(error.code);
}
