// A small tus 1.0 client (core + creation) for POST /v1/files/ (PROTOCOL
// §15): create the upload, PATCH it in chunks with progress, and after a
// failure ask the server its offset (HEAD) and go on from there.
const CHUNK = 1 << 20;

function b64(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

function xhr(method, url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, url);
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    if (onProgress) x.upload.onprogress = (e) => onProgress(e.loaded);
    x.onload = () => resolve(x);
    x.onerror = () => reject(new Error(`${method} failed`));
    x.send(body);
  });
}

async function errorOf(x) {
  try { return JSON.parse(x.responseText).msg || x.statusText; } catch { return x.responseText || x.statusText; }
}

// upload sends file and returns its fid; onProgress gets 0..1.
export async function upload(file, token, onProgress) {
  const auth = { Authorization: `Bearer ${token}`, "Tus-Resumable": "1.0.0" };
  const c = await xhr("POST", "/v1/files/", {
    ...auth,
    "Upload-Length": String(file.size),
    "Upload-Metadata": `filename ${b64(file.name)},filetype ${b64(file.type || "application/octet-stream")}`,
  }, null);
  if (c.status !== 201) throw new Error(`upload refused: ${await errorOf(c)}`);
  const loc = new URL(c.getResponseHeader("Location"), location.href).pathname;
  const fid = loc.split("/").filter(Boolean).pop();
  let off = 0, tries = 0;
  while (off < file.size) {
    const end = Math.min(off + CHUNK, file.size);
    let x;
    try {
      x = await xhr("PATCH", loc, {
        ...auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(off),
      }, file.slice(off, end), (n) => onProgress((off + n) / file.size));
    } catch (e) {
      x = null;
    }
    if (x && x.status === 204) {
      off = Number(x.getResponseHeader("Upload-Offset"));
      tries = 0;
      onProgress(off / file.size);
      continue;
    }
    if (x && x.status >= 400 && x.status < 500 && x.status !== 409) throw new Error(`upload failed: ${await errorOf(x)}`);
    if (++tries > 5) throw new Error("upload failed: the connection keeps failing");
    await new Promise((r) => setTimeout(r, 500 * tries));
    const h = await xhr("HEAD", loc, auth, null).catch(() => null);
    if (h && h.status === 200) off = Number(h.getResponseHeader("Upload-Offset"));
  }
  onProgress(1);
  return fid;
}
