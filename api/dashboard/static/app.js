// Sign-in and hash routing (#/jobs, #/jobs/ID, #/new, #/tradeoff). Each page returns a stop()
// that ends its polling when the user navigates away.
import { api, clearKey, getKey, setKey } from "./api.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";
import { showNewJob } from "./newjob.js";
import { showTradeoff } from "./tradeoff.js";

const PAGES = ["sign-in", "page-jobs", "page-job", "page-new", "page-tradeoff"];
let stopPage = () => {};

function only(id) {
  for (const p of PAGES) document.getElementById(p).hidden = p !== id;
  document.getElementById("nav").hidden = id === "sign-in";
}

// A 401 means the key was revoked or is wrong: back to sign-in. Returns true when handled.
function onError(e) {
  if (e && e.status === 401) {
    clearKey();
    route();
    document.getElementById("sign-in-error").textContent = "Your key is no longer valid; sign in again.";
    return true;
  }
  if (e && e.status === 404 && document.getElementById("page-job").hidden === false) {
    document.getElementById("job-error").textContent = e.message;
    return true;
  }
  console.error(e);
  return false;
}

function route() {
  stopPage();
  stopPage = () => {};
  if (!getKey()) {
    only("sign-in");
    return;
  }
  const hash = location.hash || "#/jobs";
  const job = hash.match(/^#\/jobs\/([\w-]+)$/);
  if (job) {
    only("page-job");
    stopPage = showJob(job[1], onError);
  } else if (hash === "#/new") {
    only("page-new");
    stopPage = showNewJob(onError);
  } else if (hash === "#/tradeoff") {
    only("page-tradeoff");
    stopPage = showTradeoff(onError);
  } else {
    only("page-jobs");
    stopPage = showJobs(onError);
  }
}

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  const error = document.getElementById("sign-in-error");
  error.textContent = "";
  try {
    await api.check(key);
  } catch (e) {
    error.textContent = e.status === 401 ? "That key is not valid." : `Cannot reach the server: ${e.message}`;
    return;
  }
  setKey(key, document.getElementById("remember").checked);
  document.getElementById("key").value = "";
  if (!location.hash || location.hash === "#/") location.hash = "#/jobs";
  route();
});

document.getElementById("sign-out").addEventListener("click", () => {
  clearKey();
  location.hash = "";
  route();
});

window.addEventListener("hashchange", route);
route();
