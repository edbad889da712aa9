// Behaviour shared by every page: sign-out (a POST with the CSRF header, never a GET link).
import { api, toast } from "./api.js";

const signOut = document.getElementById("sign-out");
if (signOut) {
  signOut.addEventListener("click", async () => {
    try {
      await api("/auth/logout", { method: "POST" });
    } catch (err) {
      if (err.status !== 401) {
        toast(`Sign-out failed: ${err.message}`, "error");
        return;
      }
    }
    window.location.assign("/login");
  });
}
