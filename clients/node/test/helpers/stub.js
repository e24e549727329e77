// A scripted HTTP server standing in for the ML service: each request is answered by the next
// handler in the script (the last one repeats) and recorded with its headers and body.
import { createServer } from 'node:http';

export function envelope(data, requestId = 'stub') {
  return JSON.stringify({ success: true, data, error: null, meta: { request_id: requestId, api_version: 'v1', duration_ms: 0.1 } });
}

export function errorEnvelope(code, message, details = [], requestId = 'stub') {
  return JSON.stringify({ success: false, data: null, error: { code, message, details }, meta: { request_id: requestId, api_version: 'v1', duration_ms: 0.1 } });
}

/** Handlers: (req, res, body) => void. Helpers below build common ones. */
export const reply = (status, body, headers = {}) => (req, res) => {
  res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': req.headers['x-request-id'] ?? 'stub', ...headers });
  res.end(body);
};
export const ok = (data) => (req, res) => reply(200, envelope(data, req.headers['x-request-id']))(req, res);
export const fail = (status, code, headers = {}) => (req, res) =>
  reply(status, errorEnvelope(code, `${code} from the stub`, [], req.headers['x-request-id']), headers)(req, res);
export const hangUp = () => (req, res) => res.socket.destroy();
export const delay = (ms, handler) => (req, res, body) => {
  const timer = setTimeout(() => handler(req, res, body), ms);
  res.on('close', () => clearTimeout(timer));
};

export async function startStub() {
  const requests = [];
  let script = [ok({})];
  const server = createServer(async (req, res) => {
    const chunks = [];
    try {
      for await (const chunk of req) chunks.push(chunk);
    } catch {
      return;
    }
    const body = Buffer.concat(chunks);
    const record = { method: req.method, url: req.url, headers: req.headers, body, at: Date.now() };
    requests.push(record);
    const handler = script.length > 1 ? script.shift() : script[0];
    handler(req, res, body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    /** Replace the script and forget earlier requests. */
    script(...handlers) {
      script = handlers;
      requests.length = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}
