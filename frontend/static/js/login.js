// Sign-in: the API sets the HttpOnly session cookie; we then go where the user was headed.
import { api, el } from "./api.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const submit = document.getElementById("login-submit");

function safeNext(next) {
  // Only same-site paths: an open redirect would let a phishing link bounce through the login.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/images";
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  errorBox.replaceChildren();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    errorBox.replaceChildren(el("div", { class: "alert error" }, "Enter your user name and password."));
    return;
  }
  submit.disabled = true;
  try {
    await api("/auth/login", { method: "POST", json: { username, password } });
    window.location.assign(safeNext(form.dataset.next));
  } catch (err) {
    errorBox.replaceChildren(el("div", { class: "alert error" }, err.message));
    form.password.select();
  } finally {
    submit.disabled = false;
  }
});
