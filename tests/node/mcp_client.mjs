// An independent MCP client for the tests: the TypeScript SDK's Client over its
// StreamableHTTPClientTransport, in the SDK's default mode (initialize with its latest
// protocol version, then that version's header on every request).
//
//   node mcp_client.mjs '<job JSON>'        (or the job JSON on stdin)
//
// Job: {"url": "http://127.0.0.1:PORT/mcp",
//       "token": "...",                      optional: sent as "Authorization: Bearer ..."
//       "list_tools": true,                  optional, default true
//       "calls": [{"name": "select_rows", "arguments": {...}}, ...]}
//
// Prints ONE JSON document on stdout and exits 0, whatever the server answered:
//   {"connect": {"ok": true, "protocol_version", "server", "capabilities", "instructions"}
//              | {"ok": false, "error": ERROR},
//    "tools":   {"ok": true, "tools": [...]} | {"ok": false, "error": ERROR} | null,
//    "calls":   [{"name", "ok": true, "result": CallToolResult} | {"name", "ok": false, "error": ERROR}],
//    "http":    [{"method", "status", "content_type", "www_authenticate", "rpc"}]}
// ERROR: {"type", "message", "code", "http_status", "data"}: `code` is what the SDK put on the
// error (the HTTP status for a StreamableHTTPError, the JSON-RPC code for an McpError);
// `http_status` is set when the SDK reports an HTTP failure. "http" is every HTTP exchange the
// transport made, seen through its `fetch` option (the SDK does not expose response headers).
// A script failure (bad job, a bug here) exits 2 with the reason on stderr.

import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const REQUEST_TIMEOUT_MS = 30_000;

function readJob() {
  const text = process.argv[2] ?? readFileSync(0, "utf8");
  const job = JSON.parse(text);
  if (typeof job.url !== "string") throw new Error("job.url must be a string");
  return job;
}

function describeError(err) {
  const out = {
    type: err?.constructor?.name ?? typeof err,
    message: err instanceof Error ? err.message : String(err),
    code: err?.code ?? null,
    http_status: null,
    data: err?.data ?? null,
  };
  if (err instanceof StreamableHTTPError && typeof err.code === "number" && err.code > 0) {
    out.http_status = err.code;
  } else if (err instanceof McpError) {
    out.type = "McpError";
  }
  return out;
}

async function main() {
  const job = readJob();
  const exchanges = [];

  // Watches what the transport sends and receives; changes nothing.
  const observingFetch = async (input, init) => {
    let rpc = null;
    if (typeof init?.body === "string") {
      try {
        const message = JSON.parse(init.body);
        rpc = Array.isArray(message) ? message.map((m) => m.method ?? null) : message.method ?? null;
      } catch {
        rpc = null;
      }
    }
    const response = await fetch(input, init);
    exchanges.push({
      method: init?.method ?? "GET",
      status: response.status,
      content_type: response.headers.get("content-type"),
      www_authenticate: response.headers.get("www-authenticate"),
      rpc,
    });
    return response;
  };

  const headers = {};
  if (job.token) headers.Authorization = `Bearer ${job.token}`;
  const transport = new StreamableHTTPClientTransport(new URL(job.url), {
    requestInit: { headers },
    fetch: observingFetch,
  });
  const client = new Client({ name: "rowgate-tests-ts-sdk", version: "1.0.0" });
  client.onerror = () => {}; // background stream errors are not the job's result

  const report = { connect: null, tools: null, calls: [], http: exchanges };
  try {
    await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
    report.connect = {
      ok: true,
      protocol_version: transport.protocolVersion ?? null,
      server: client.getServerVersion() ?? null,
      capabilities: client.getServerCapabilities() ?? null,
      instructions: client.getInstructions() ?? null,
    };
  } catch (err) {
    report.connect = { ok: false, error: describeError(err) };
  }

  if (report.connect.ok) {
    if (job.list_tools !== false) {
      try {
        const listing = await client.listTools(undefined, { timeout: REQUEST_TIMEOUT_MS });
        report.tools = { ok: true, tools: listing.tools };
      } catch (err) {
        report.tools = { ok: false, error: describeError(err) };
      }
    }
    for (const call of job.calls ?? []) {
      try {
        // callTool checks structuredContent against the tool's outputSchema from tools/list.
        const result = await client.callTool(
          { name: call.name, arguments: call.arguments ?? {} },
          undefined,
          { timeout: REQUEST_TIMEOUT_MS },
        );
        report.calls.push({ name: call.name, ok: true, result });
      } catch (err) {
        report.calls.push({ name: call.name, ok: false, error: describeError(err) });
      }
    }
  }

  try {
    await client.close();
  } catch {
    // closing a transport that never connected
  }
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`mcp_client.mjs: ${err?.stack ?? err}\n`);
    process.exit(2);
  },
);
