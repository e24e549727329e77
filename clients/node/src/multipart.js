/**
 * multipart/form-data bodies for the CLIP and retrain uploads.
 *
 * Two encodings, chosen per request:
 * - every part in memory (Buffer, Uint8Array, ArrayBuffer, Blob/File, string): a FormData,
 *   which fetch sends with a Content-Length and which can be rebuilt for a retry;
 * - any part a stream (Node Readable, web ReadableStream, async iterable): a hand-built
 *   multipart ReadableStream sent with `duplex: "half"` and chunked transfer encoding. Bytes
 *   flow from the source to the socket with backpressure and nothing is buffered, so a
 *   gateway can forward an incoming upload as it arrives. Such a body can be sent once only,
 *   so requests with a stream part are never retried.
 */
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';

const encoder = new TextEncoder();

function isAsyncIterable(value) {
  return value != null && typeof value[Symbol.asyncIterator] === 'function';
}

/** A Node Readable, a web ReadableStream or any async iterable of chunks. */
export function isStreamSource(value) {
  if (value == null || typeof value !== 'object') return false;
  if (value instanceof Blob || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return false;
  return isAsyncIterable(value) || (typeof ReadableStream !== 'undefined' && value instanceof ReadableStream);
}

function isBinary(value) {
  return value instanceof Blob || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

/** A plain `{ data, filename?, contentType? }` descriptor, as opposed to raw data. */
function isDescriptor(value) {
  return value != null && typeof value === 'object' && !isBinary(value) && !isStreamSource(value) && 'data' in value;
}

/**
 * Normalise an upload to `{ data, filename, contentType }`.
 * @param {unknown} input raw data or a `{ data, filename, contentType }` descriptor
 * @param {string} field form field name (for messages)
 * @param {{ filename: string, contentType: string, allowString?: boolean }} defaults
 */
export function toFilePart(input, field, defaults) {
  const desc = isDescriptor(input) ? input : { data: input };
  const { data } = desc;
  const ok = isBinary(data) || isStreamSource(data) || (defaults.allowString && typeof data === 'string');
  if (!ok) {
    const hint = typeof data === 'string' ? ' (to upload a file by path, pass fs.createReadStream(path) or await fs.openAsBlob(path))' : '';
    throw new TypeError(`${field} must be a Buffer, Uint8Array, ArrayBuffer, Blob, Readable stream or ReadableStream${hint}.`);
  }
  const blobName = typeof File !== 'undefined' && data instanceof File ? data.name : undefined;
  const blobType = data instanceof Blob && data.type ? data.type : undefined;
  return {
    data,
    filename: desc.filename ?? blobName ?? defaults.filename,
    contentType: desc.contentType ?? blobType ?? defaults.contentType,
  };
}

/** Field names and filenames escaped as the WHATWG HTML spec does for form submission. */
function quote(value) {
  return String(value).replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22');
}

function toUint8(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return encoder.encode(chunk);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`Unsupported chunk type in an upload stream: ${Object.prototype.toString.call(chunk)}`);
}

async function* chunksOf(data) {
  if (typeof data === 'string') yield encoder.encode(data);
  else if (data instanceof Blob) yield* data.stream();
  else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) yield toUint8(data);
  else for await (const chunk of data) yield toUint8(chunk); // Node Readable, ReadableStream, async iterable
}

async function* encode(parts, boundary) {
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${quote(part.name)}"`;
    if (part.file) {
      head += `; filename="${quote(part.file.filename)}"\r\nContent-Type: ${part.file.contentType}`;
    }
    yield encoder.encode(`${head}\r\n\r\n`);
    if (part.file) yield* chunksOf(part.file.data);
    else yield encoder.encode(String(part.value));
    yield encoder.encode('\r\n');
  }
  yield encoder.encode(`--${boundary}--\r\n`);
}

/** A pull-based ReadableStream over an async iterator; cancelling it ends the source. */
function streamFrom(iterator) {
  return new ReadableStream({
    async pull(controller) {
      try {
        const { value, done } = await iterator.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

/**
 * Build a multipart body.
 * @param {Array<{ name: string, value?: string, file?: { data: unknown, filename: string, contentType: string } }>} parts
 * @returns {{ body: FormData | ReadableStream, headers: Record<string, string>, duplex?: 'half', replayable: boolean }}
 */
export function buildMultipart(parts) {
  const streaming = parts.some((p) => p.file && isStreamSource(p.file.data));
  if (!streaming) {
    const form = new FormData();
    for (const part of parts) {
      if (!part.file) {
        form.append(part.name, String(part.value));
        continue;
      }
      const { data, filename, contentType } = part.file;
      const blob = data instanceof Blob && (data.type || '') === contentType ? data : new Blob([data], { type: contentType });
      form.append(part.name, blob, filename);
    }
    return { body: form, headers: {}, replayable: true };
  }
  const boundary = `----SkillCompassMlClient${randomBytes(12).toString('hex')}`;
  return {
    body: streamFrom(encode(parts, boundary)),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    duplex: 'half',
    replayable: false,
  };
}

/** Base64 of an image (a string is sent as is: plain base64 or a data URI). */
export async function toBase64(input, field) {
  const data = isDescriptor(input) ? input.data : input;
  if (typeof data === 'string') return data;
  if (data instanceof Blob) return Buffer.from(await data.arrayBuffer()).toString('base64');
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    const u8 = toUint8(data);
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');
  }
  if (isStreamSource(data)) {
    const chunks = [];
    for await (const chunk of chunksOf(data)) chunks.push(chunk);
    return Buffer.concat(chunks).toString('base64');
  }
  throw new TypeError(`${field} must be a base64 string, data URI, Buffer, Uint8Array, ArrayBuffer, Blob or stream.`);
}
