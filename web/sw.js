// The offline page's service worker (registered where config.json says "offline", i.e. in the
// folder export.py writes). Installing it caches every file config.json lists, under a cache named
// by the folder's hash; each later request goes to the network first, so a new export is seen as
// soon as it is online, and falls back to that cache when there is no network.
"use strict";

const PREFIX = "mnist-page-";

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    const cache = await caches.open(PREFIX + config.version);
    await cache.addAll(["./", ...config.files]);
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    const current = await currentCache();
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== current) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// The newest cache this worker filled (there is one once it is installed).
async function currentCache() {
  const names = (await caches.keys()).filter((name) => name.startsWith(PREFIX));
  return names.at(-1);
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(request);
      if (response.ok) {
        const copy = response.clone();
        caches.open(await currentCache()).then((cache) => cache.put(request, copy));
      }
      return response;
    } catch (offline) {
      const cached = await caches.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
