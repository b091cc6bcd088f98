// The browser test's page: what an agent UI does, with
// @connectrpc/connect-web over gRPC-web and over Connect, against a running
// kontakt. test/browser/run.mjs loads it in chromium and calls one scenario
// (window.kontakt.<name>); each returns what it saw, and
// test/e2e/browser_test.go decides whether that is right. The page
// asserts nothing itself, so that a failure shows everything observed.
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { CaseType, Channel, Resolution } from "../gen/kontakt/case/v1/case_pb";
import { IntakeService } from "../gen/kontakt/intake/v1/intake_pb";
import { QueueChange, RoutingService } from "../gen/kontakt/routing/v1/routing_pb";

type Protocol = "grpc-web" | "connect";

interface Params {
  baseUrl: string;
  protocol: Protocol;
  agentToken: string;
  formToken?: string;
  tries?: number;
  streams?: number;
  queue?: string;
}

function transport(p: Params): Transport {
  const opts = { baseUrl: p.baseUrl, interceptors: [] };
  // Connect in its default JSON codec, gRPC-web in protobuf: the two
  // codecs a UI meets.
  return p.protocol === "grpc-web" ? createGrpcWebTransport(opts) : createConnectTransport(opts);
}

const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

// describe turns any failure into data for the Go test.
function describe(e: unknown) {
  const ce = ConnectError.from(e);
  return {
    code: Code[ce.code],
    message: ce.rawMessage,
    violations: ce.findDetails(BadRequestSchema).flatMap((br) =>
      br.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
    ),
    reasons: ce.findDetails(ErrorInfoSchema).map((i) => i.reason),
    cause: ce.cause instanceof Error ? String(ce.cause) : "",
  };
}

async function attempt<T>(f: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: ReturnType<typeof describe> }> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, error: describe(e) };
  }
}

interface Seen {
  change: string;
  kind: string;
  caseId: string;
  caseNumber: string;
}

// watch opens WatchQueue and records every message until aborted.
function watch(client: Client<typeof RoutingService>, p: Params, queue: string) {
  const abort = new AbortController();
  const seen: Seen[] = [];
  let ended: ReturnType<typeof describe> | null = null;
  const done = (async () => {
    try {
      for await (const m of client.watchQueue({ queue }, { ...auth(p.agentToken), signal: abort.signal })) {
        seen.push({
          change: m.change,
          kind: QueueChange[m.kind] ?? String(m.kind),
          caseId: m.case?.caseId ?? "",
          caseNumber: m.case?.caseNumber ?? "",
        });
      }
    } catch (e) {
      if (!abort.signal.aborted) ended = describe(e);
    }
  })();
  const until = async (what: (s: Seen) => boolean, ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (seen.some(what)) return true;
      if (ended) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  };
  return { seen, until, ended: () => ended, close: async () => { abort.abort(); await done; } };
}

// workflow is an agent's day with one case, as the UI does it.
async function workflow(p: Params) {
  const t = transport(p);
  const routing = createClient(RoutingService, t);
  const intake = createClient(IntakeService, t);
  const out: Record<string, unknown> = { protocol: p.protocol };

  const queues = await attempt(() => routing.listQueues({}, auth(p.agentToken)));
  out.listQueues = queues.ok ? { ok: true, names: queues.value.queues.map((q) => q.name) } : queues;

  const w = watch(routing, p, p.queue ?? "kontaktcenter");
  out.watchOpened = await w.until((s) => s.change === "watching", 15000);

  const reg = await attempt(() =>
    intake.registerCase(
      {
        case: {
          type: CaseType.FRAGA,
          channel: Channel.EMAIL,
          category: "ovrigt",
          subject: `Webbläsartest ${p.protocol}`,
          description: "Hur bokar jag en tid?",
          contact: { email: "medborgare@example.se" },
        },
      },
      auth(p.agentToken),
    ),
  );
  out.registerCase = reg.ok ? { ok: true, caseNumber: reg.value.caseNumber } : reg;
  if (!reg.ok) {
    await w.close();
    return out;
  }
  const caseId = reg.value.caseId;
  out.seenOnWatch = await w.until((s) => s.caseId === caseId && s.change !== "watching", 20000);

  const claim = await attempt(() => routing.claimCase({ caseId }, auth(p.agentToken)));
  out.claimCase = claim.ok ? { ok: true } : claim;
  out.claimSeenOnWatch = await w.until((s) => s.caseId === caseId && s.change === "assigned", 20000);

  const got = await attempt(() => routing.getCase({ caseId, purpose: "webbläsartest" }, auth(p.agentToken)));
  out.getCase = got.ok
    ? { ok: true, caseNumber: got.value.case?.summary?.caseNumber, email: got.value.case?.personalData?.contact?.email }
    : got;

  const answer = await attempt(() => routing.answerCase({ caseId, answer: "Boka på webbplatsen." }, auth(p.agentToken)));
  out.answerCase = answer.ok ? { ok: true } : answer;
  const close = await attempt(() =>
    routing.closeCase({ caseId, resolution: Resolution.ANSWERED_DIRECTLY, firstContactResolution: true }, auth(p.agentToken)),
  );
  out.closeCase = close.ok ? { ok: true } : close;
  out.closeSeenOnWatch = await w.until((s) => s.caseId === caseId && s.change === "closed", 20000);
  out.watchEnded = w.ended();
  await w.close();
  out.watched = w.seen.filter((s) => s.caseId === caseId || s.change === "watching");

  // A case the rules refuse, to show the field details a form needs.
  const bad = await attempt(() =>
    intake.registerCase(
      { case: { channel: Channel.EMAIL, category: "ovrigt", subject: "x", contact: { email: "inte en adress", postalAddress: { postalCode: "1" } } } },
      auth(p.agentToken),
    ),
  );
  out.invalidCase = bad.ok ? { ok: true } : bad;

  return out;
}

// forms: an e-service form posts twice with one idempotency key and reads
// Idempotent-Replayed; an Open311 post chooses its key in a header.
async function forms(p: Params) {
  const intake = createClient(IntakeService, transport(p));
  const key = `webb-${p.protocol}-${Date.now()}`;
  const replayed: (string | null)[] = [];
  const submits: unknown[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await attempt(() =>
      intake.submitForm(
        { idempotencyKey: key, case: { type: CaseType.FRAGA, category: "ovrigt", subject: "Fråga från e-tjänsten" } },
        {
          ...auth(p.formToken!),
          onHeader: (h: Headers) => {
            replayed.push(h.get("idempotent-replayed"));
          },
        },
      ),
    );
    submits.push(r.ok ? { ok: true, caseNumber: r.value.caseNumber } : r);
  }
  let open311: unknown;
  try {
    const body = new URLSearchParams({
      api_key: p.formToken!,
      service_code: "gatubelysning",
      lat: "57.6554",
      long: "12.0138",
      description: "Lampan lyser inte",
    });
    const res = await fetch(`${p.baseUrl}/open311/v2/requests.json`, {
      method: "POST",
      body,
      headers: { "Idempotency-Key": `open311-${p.protocol}-${Date.now()}` },
    });
    open311 = { ok: true, status: res.status };
  } catch (e) {
    open311 = { ok: false, error: String(e) };
  }
  return { submits, replayed, open311 };
}

// oversized sends a RegisterCase larger than the limit (4 MiB) `tries`
// times and reports each answer.
async function oversized(p: Params) {
  const intake = createClient(IntakeService, transport(p));
  const big = "x".repeat(5 << 20);
  const answers: unknown[] = [];
  for (let i = 0; i < (p.tries ?? 20); i++) {
    const r = await attempt(() =>
      intake.registerCase(
        { case: { type: CaseType.FRAGA, channel: Channel.LETTER, category: "ovrigt", description: big } },
        auth(p.agentToken),
      ),
    );
    answers.push(r.ok ? { ok: true } : r.error);
  }
  return answers;
}

// streams opens `streams` WatchQueue streams, then calls ListQueues.
async function streams(p: Params) {
  const routing = createClient(RoutingService, transport(p));
  const n = p.streams ?? 8;
  const watches = Array.from({ length: n }, () => watch(routing, p, p.queue ?? "kontaktcenter"));
  const opened = (await Promise.all(watches.map((w) => w.until((s) => s.change === "watching", 5000)))).filter(Boolean).length;
  const start = performance.now();
  const call = await attempt(() => routing.listQueues({}, { ...auth(p.agentToken), timeoutMs: 5000 }));
  const ms = Math.round(performance.now() - start);
  await Promise.all(watches.map((w) => w.close()));
  return { opened, call: call.ok ? { ok: true } : call, ms };
}

// refused calls ListQueues from an origin kontakt does not allow.
async function refused(p: Params) {
  const routing = createClient(RoutingService, transport(p));
  const r = await attempt(() => routing.listQueues({}, auth(p.agentToken)));
  return r.ok ? { ok: true } : r.error;
}

(window as unknown as { kontakt: unknown }).kontakt = { workflow, forms, oversized, streams, refused };
