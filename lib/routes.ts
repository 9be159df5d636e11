// The `routes` option of `serve()`, as Bun.serve reads it: a table from path patterns to a
// handler, a fixed Response, or an object of either per method. Matched in JS against the
// path of `request.url` (already normalized as the URL parser does: dot segments resolved,
// `\` read as `/`), so `GET /public/../admin` reaches `/admin` and no parameter holds `..`.
//
// Precedence, whatever the order of the keys: a path with no parameter, then parameters
// (a literal segment before a parameter at each position), then wildcards (`/api/*`, the
// longest prefix first). A route with per-method answers that has none for the request's
// method lets the next matching route answer, then the `fetch` handler, then a 404.

import { createHash } from "node:crypto";
import type { Request } from "./request.js";
import { Response } from "./response.js";
// The option errors and their "got ..." of serve()'s other options. (A cycle with server.ts,
// which imports this module: both are function declarations, bound before either runs.)
import { got, optionError, type ExecutionContext, type ServeInfo } from "./server.js";

/** A request a route answers: `params` holds its path's parameters, percent-decoded. */
export type RouteRequest = Request & { params: Record<string, string> };

/** A route's handler: called as `fetch` is, with `request.params` set. */
export type RouteHandler = (
  request: RouteRequest,
  info: ServeInfo & ExecutionContext,
  ctx: ServeInfo & ExecutionContext,
) => unknown;

/** An answer for every method, or per method; `false` leaves the path to `fetch`. */
export type RouteValue =
  RouteHandler | Response | globalThis.Response | false | Record<string, RouteHandler | Response | globalThis.Response>;

export type Routes = Record<string, RouteValue>;

type Info = ServeInfo & ExecutionContext;

/** The `fetch` handler that answers what no route does. */
export type Fallback = (request: Request, info: Info, ctx: Info) => unknown;

// A fixed Response, read once: its body bytes are shared by every answer.
class Fixed {
  readonly #status: number;
  readonly #statusText: string;
  readonly #headers: [string, string][];
  #body: Uint8Array | null = null;
  #etag: string | null = null;
  #ready: Promise<void> | null;
  // The headers a 304 keeps (RFC 9110 15.4.5).
  #notModified: [string, string][] = [];

  constructor(response: Response | globalThis.Response, where: string) {
    this.#status = response.status;
    this.#statusText = response.statusText;
    this.#headers = [...(response.headers as Iterable<[string, string]>)];
    let copy: Response | globalThis.Response;
    try {
      copy = response.clone();
    } catch (e) {
      throw optionError(`${where}: ${(e as Error).message}`);
    }
    this.#ready = copy.arrayBuffer().then(
      (buffer) => {
        this.#settle(new Uint8Array(buffer));
      },
      (e: unknown) => {
        // The body cannot be read: the route answers 500 (and reports why) rather than
        // leaving its requests unanswered.
        this.#ready = Promise.reject(e);
        this.#ready.catch(() => {});
      },
    );
  }

  #settle(bytes: Uint8Array): void {
    this.#ready = null;
    if (NULL_BODY.has(this.#status)) return;
    this.#body = bytes;
    let etag: string | null = null;
    for (const [name, value] of this.#headers) if (name === "etag") etag = value;
    if (etag === null && this.#status === 200) {
      // A strong validator of the bytes, as a cache would compare them (RFC 9110 8.8.3).
      etag = `"${createHash("sha1").update(bytes).digest("base64url")}"`;
      this.#headers.push(["etag", etag]);
    }
    this.#etag = etag;
    if (etag !== null) for (const h of this.#headers) if (KEPT_BY_304.has(h[0])) this.#notModified.push(h);
  }

  answer(request: Request): Response | Promise<Response> {
    if (this.#ready !== null) return this.#ready.then(() => this.answer(request));
    if (this.#etag !== null) {
      const method = request.method;
      if (method === "GET" || method === "HEAD") {
        const inm = request.headers.get("if-none-match");
        if (inm !== null && noneMatchFails(inm, this.#etag))
          return new Response(null, { status: 304, headers: this.#notModified });
      }
    }
    return new Response(this.#body, { status: this.#status, statusText: this.#statusText, headers: this.#headers });
  }
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const KEPT_BY_304 = new Set(["cache-control", "content-location", "etag", "expires", "vary"]);

// https://www.rfc-editor.org/rfc/rfc9110#section-13.1.2: true when `If-None-Match` lists
// `*` or an entity-tag that matches `etag` by the weak comparison.
function noneMatchFails(field: string, etag: string): boolean {
  const opaque = etag.startsWith("W/") ? etag.slice(2) : etag;
  let i = 0;
  const n = field.length;
  while (i < n) {
    const c = field.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x2c) {
      i++;
      continue;
    }
    if (c === 0x2a) return true;
    let start = i;
    if (field.startsWith("W/", i)) start = i += 2;
    if (field.charCodeAt(i) !== 0x22) return false;
    const close = field.indexOf('"', i + 1);
    if (close < 0) return false;
    if (field.slice(start, close + 1) === opaque) return true;
    i = close + 1;
  }
  return false;
}

// What a route answers for one method, or for every method.
type Answer = RouteHandler | Fixed;

class Route {
  constructor(
    readonly key: string,
    readonly names: readonly string[],
    readonly any: Answer | null,
    readonly methods: Map<string, Answer> | null,
  ) {}

  answerFor(method: string): Answer | undefined {
    if (this.any !== null) return this.any;
    const m = this.methods!;
    // HEAD is GET without the body (RFC 9110 9.3.2): a GET answer serves it too.
    return m.get(method) ?? (method === "HEAD" ? m.get("GET") : undefined);
  }
}

class Node {
  literal: Map<string, Node> | null = null;
  param: Node | null = null;
  route: Route | null = null;
  wildcard: Route | null = null;

  child(segment: string): Node {
    this.literal ??= new Map();
    let next = this.literal.get(segment);
    if (next === undefined) this.literal.set(segment, (next = new Node()));
    return next;
  }
}

const PARAM_NAME = /^[A-Za-z_$][\w$]*$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function isResponse(v: unknown): v is Response | globalThis.Response {
  return v instanceof Response || v instanceof globalThis.Response;
}

function answerOf(v: unknown, where: string): Answer {
  if (typeof v === "function") return v as RouteHandler;
  if (isResponse(v)) return new Fixed(v, where);
  throw optionError(`${where} must be a function or a Response, got ${got(v)}`);
}

/** A compiled `routes` table. */
export class Router {
  // Paths without parameters or wildcard, looked up whole before the tree is walked.
  readonly #exact = new Map<string, Route>();
  readonly #root = new Node();
  readonly size: number;

  constructor(routes: Routes) {
    if (routes === null || typeof routes !== "object" || Array.isArray(routes))
      throw optionError(`routes must be an object of path patterns, got ${got(routes)}`);
    let size = 0;
    for (const key of Object.keys(routes)) {
      const value = routes[key];
      if (value === false) continue;
      this.#add(key, value);
      size++;
    }
    this.size = size;
  }

  #add(key: string, value: unknown): void {
    const where = `routes[${JSON.stringify(key)}]`;
    if (!key.startsWith("/")) throw optionError(`${where}: a route's path must start with "/"`);
    // Written as the URL parser writes a request's path (`/café` as `/caf%C3%A9`).
    const path = new URL(key, "http://h").pathname;
    const segments = path.slice(1).split("/");
    const names: string[] = [];
    let node = this.#root;
    let wildcard = false;
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i];
      if (s === "*") {
        if (i !== segments.length - 1) throw optionError(`${where}: "*" may only end a route's path`);
        wildcard = true;
      } else if (s.startsWith(":")) {
        const name = s.slice(1);
        if (!PARAM_NAME.test(name))
          throw optionError(
            `${where}: a parameter's name must be letters, digits, "_" or "$", not starting with a digit`,
          );
        if (names.includes(name)) throw optionError(`${where}: the parameter ${name} is named twice`);
        names.push(name);
        node = node.param ??= new Node();
      } else node = node.child(s);
    }
    let any: Answer | null = null;
    let methods: Map<string, Answer> | null = null;
    if (typeof value === "function" || isResponse(value)) any = answerOf(value, where);
    else if (value !== null && typeof value === "object") {
      methods = new Map();
      for (const method of Object.keys(value)) {
        if (!TOKEN.test(method)) throw optionError(`${where}: ${JSON.stringify(method)} is not a method name`);
        methods.set(method, answerOf((value as Record<string, unknown>)[method], `${where}.${method}`));
      }
    } else
      throw optionError(
        `${where} must be a function, a Response, an object of them by method, or false; got ${got(value)}`,
      );
    const route = new Route(key, names, any, methods);
    if (wildcard) {
      if (node.wildcard !== null)
        throw optionError(`${where}: the same pattern as routes[${JSON.stringify(node.wildcard.key)}]`);
      node.wildcard = route;
    } else {
      if (node.route !== null)
        throw optionError(`${where}: the same pattern as routes[${JSON.stringify(node.route.key)}]`);
      node.route = route;
      if (names.length === 0) this.#exact.set(path, route);
    }
  }

  /**
   * Answers `request` from the table; `fallback` when no route answers its method, or a 404
   * without one.
   */
  dispatch(request: Request, info: Info, fallback: Fallback | null): unknown {
    const url = request.url;
    const path = pathOf(url);
    const method = request.method;
    const exact = this.#exact.get(path);
    if (exact !== undefined) {
      const a = exact.answerFor(method);
      if (a !== undefined) return run(a, request, EMPTY, exact, info);
    }
    const segments = path.slice(1).split("/");
    const values: string[] = [];
    const wild: Route[] = [];
    const found = walk(this.#root, segments, 0, values, wild, method, exact);
    if (found !== null) return run(found.answerFor(method)!, request, values, found, info);
    // Wildcards, the deepest (longest prefix) first: `wild` holds them as the walk left
    // their nodes, deepest first.
    for (const route of wild) {
      const a = route.answerFor(method);
      if (a !== undefined) return run(a, request, EMPTY, route, info);
    }
    if (fallback !== null) return fallback(request, info, info);
    return new Response(null, { status: 404 });
  }
}

const EMPTY: string[] = [];

// The first full match, in precedence order, whose route answers `method` (`skip`: already
// tried); `values` holds its parameters' raw values. Each node is at one depth, so a walk
// visits it at most once.
function walk(
  node: Node,
  segments: string[],
  i: number,
  values: string[],
  wild: Route[],
  method: string,
  skip: Route | undefined,
): Route | null {
  if (i === segments.length) {
    const r = node.route;
    return r !== null && r !== skip && r.answerFor(method) !== undefined ? r : null;
  }
  const s = segments[i];
  const next = node.literal?.get(s);
  if (next !== undefined) {
    const r = walk(next, segments, i + 1, values, wild, method, skip);
    if (r !== null) return r;
  }
  if (node.param !== null && s !== "") {
    values.push(s);
    const r = walk(node.param, segments, i + 1, values, wild, method, skip);
    if (r !== null) return r;
    values.pop();
  }
  if (node.wildcard !== null) wild.push(node.wildcard);
  return null;
}

function run(answer: Answer, request: Request, values: string[], route: Route, info: Info): unknown {
  const params: Record<string, string> = {};
  const names = route.names;
  for (let i = 0; i < names.length; i++) params[names[i]] = decodeParam(values[i]);
  (request as RouteRequest).params = params;
  if (answer instanceof Fixed) return answer.answer(request);
  return answer(request as RouteRequest, info, info);
}

// The path of an absolute URL as fetch-rs writes `request.url`: from the first `/` after
// the authority to the query.
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  if (end < 0) end = url.length;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  return url.slice(start, end);
}

const utf8 = new TextDecoder();

// Percent-decoded as UTF-8, an invalid sequence read as U+FFFD rather than thrown.
function decodeParam(raw: string): string {
  if (!raw.includes("%")) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    const bytes: number[] = [];
    for (let i = 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i);
      const hex = c === 0x25 ? raw.slice(i + 1, i + 3) : "";
      if (hex.length === 2 && /^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else bytes.push(c); // request.url's path is ASCII
    }
    return utf8.decode(new Uint8Array(bytes));
  }
}
