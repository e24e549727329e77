// Minimal gateway: a browser posts two images (multipart) to POST /compare; they are streamed,
// as they arrive, to the ML service's CLIP compare route through @skill-compass/ml-client,
// with X-Request-ID and traceparent propagated. Nothing is buffered beyond stream buffers.
//
//   ML_SERVICE_URL=http://localhost:8000 ML_API_KEY=... PORT=3000 node server.js
//
// Form fields: two file fields (the first file is image_a, the second image_b, whatever their
// names), optional `tags` fields sent before the files, or `?tags=a,b` in the URL.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';

import busboy from 'busboy';
import express from 'express';
import { MlClient, isMlServiceError } from '@skill-compass/ml-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Status for the browser: the service's own, or one for a failure to reach it. */
function statusOf(err) {
  if (!isMlServiceError(err)) return 500;
  if (err.status) return err.status;
  return err.code === 'TIMEOUT' ? 504 : 502;
}

function sendError(res, status, code, message, requestId, details = []) {
  if (res.headersSent) return;
  res.status(status).json({ success: false, data: null, error: { code, message, details }, meta: { request_id: requestId } });
}

/**
 * @param {{ client: MlClient, maxFileBytes?: number }} options
 */
export function createApp({ client, maxFileBytes = 10 * 1024 * 1024 }) {
  const app = express();
  app.disable('x-powered-by');

  // One request id per request: the browser's if it sent a safe one, else a new one.
  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    req.id = given && SAFE_REQUEST_ID.test(given) ? given : randomUUID().replaceAll('-', '');
    res.set('X-Request-ID', req.id);
    next();
  });

  app.get('/healthz', (req, res) => res.json({ status: 'ok' }));
  app.use(express.static(path.join(here, 'public')));

  app.post('/compare', (req, res) => {
    if (!req.is('multipart/form-data')) {
      sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'Send multipart/form-data with two image files.', req.id);
      return;
    }
    let form;
    try {
      form = busboy({ headers: req.headers, limits: { files: 2, fileSize: maxFileBytes, fields: 20, parts: 24 } });
    } catch (err) {
      sendError(res, 400, 'BAD_REQUEST', err.message, req.id);
      return;
    }

    // The upstream body reads image_a to its end, then image_b: busboy hands files over in
    // upload order, so the first file fills slot A and the second slot B (no deadlock).
    const slots = [new PassThrough(), new PassThrough()];
    let files = 0;
    let upstream = null;
    let finished = false;
    const tags = String(req.query.tags ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const cancel = new AbortController();

    const fail = (status, code, message) => {
      if (finished) return;
      finished = true;
      cancel.abort();
      for (const slot of slots) slot.destroy();
      req.unpipe(form);
      req.resume(); // drain the rest of the upload so the answer reaches the browser
      sendError(res, status, code, message, req.id);
    };

    form.on('field', (name, value) => {
      if (name === 'tags' && !upstream) tags.push(...value.split(',').map((t) => t.trim()).filter(Boolean));
    });

    form.on('file', (name, file, info) => {
      const slot = slots[files];
      files += 1;
      if (!slot || finished) {
        file.resume();
        return;
      }
      file.on('limit', () => fail(413, 'PAYLOAD_TOO_LARGE', `${info.filename || name} is larger than ${maxFileBytes} bytes.`));
      file.pipe(slot);
      if (upstream) return;
      upstream = client
        .compareImages(
          {
            imageA: { data: slots[0], filename: info.filename || 'image_a', contentType: info.mimeType },
            imageB: { data: slots[1], filename: 'image_b' },
            tags: tags.length ? tags : undefined,
          },
          { incoming: req, requestId: req.id, signal: cancel.signal, withMeta: true },
        )
        .then(
          (result) => {
            if (finished) return;
            finished = true;
            res.json({ success: true, data: result.data, error: null, meta: { request_id: result.requestId } });
          },
          (err) => {
            if (finished) return;
            const message = isMlServiceError(err) ? err.message : 'The ML service call failed.';
            console.error(`[${req.id}] compare failed: ${err.code ?? ''} ${err.message}`);
            fail(statusOf(err), err.code ?? 'INTERNAL_ERROR', message);
          },
        );
    });

    form.on('close', () => {
      if (files < 2) fail(400, 'MISSING_FILES', `Upload two image files (got ${files}).`);
    });
    form.on('error', (err) => fail(400, 'BAD_REQUEST', `The upload could not be read: ${err.message}`));
    // The browser went away mid-upload: stop the upstream call too.
    req.on('close', () => {
      if (!req.complete) fail(499, 'CLIENT_CLOSED_REQUEST', 'The browser closed the request.');
    });
    req.pipe(form);
  });

  return app;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT || 3000);
  const client = new MlClient({
    baseUrl: process.env.ML_SERVICE_URL || 'http://localhost:8000',
    apiKey: process.env.ML_API_KEY || undefined,
    timeoutMs: Number(process.env.ML_TIMEOUT_MS || 30_000),
  });
  const maxFileBytes = Math.round(Number(process.env.MAX_UPLOAD_MB || 10) * 1024 * 1024);
  const server = createApp({ client, maxFileBytes }).listen(port, () => {
    console.log(`gateway listening on :${port}, ML service ${client.baseUrl}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
