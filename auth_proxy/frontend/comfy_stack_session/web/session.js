// comfy-stack: when the login ends while the app is open (logged out in another tab, the
// session expired, the password changed), go to the login page and come back here after,
// instead of "login required" errors on Run and a WebSocket that reconnects forever.
//
// Two signs that the login may have ended: a request of this page answered 401, or the
// WebSocket closed (the gate closes it with code 4401 when its login ends). Either way
// the gate's /_auth/session says for sure: 401 there means the login ended; anything else
// (ComfyUI restarting, the network) is not a login matter and is left to the app.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const nativeFetch = window.fetch.bind(window);
let leaving = false;

async function checkLogin() {
  if (leaving) return;
  let status;
  try {
    status = (await nativeFetch("/_auth/session", { credentials: "same-origin", cache: "no-store" })).status;
  } catch {
    return;
  }
  if (status === 401 && !leaving) {
    leaving = true;
    const here = location.pathname + location.search + location.hash;
    location.assign("/login?next=" + encodeURIComponent(here));
  }
}

window.fetch = async (...args) => {
  const response = await nativeFetch(...args);
  if (response.status === 401 && new URL(response.url, location.href).origin === location.origin) {
    checkLogin();
  }
  return response;
};

api.addEventListener("reconnecting", checkLogin);

app.registerExtension({ name: "comfy-stack.session" });
