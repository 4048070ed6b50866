/* Billing pages (the CSP allows no inline script):
   data-copy="id"   on a button: copies the text of element #id to the clipboard; the button's
                    data-copied (or data-copy-failed) text is shown in the [data-copy-status] next to it.
   Delegated from the document: it keeps working after htmx swaps the payment's state. */
(function () {
  "use strict";

  function report(button, text) {
    var status = button.parentNode.querySelector("[data-copy-status]");
    if (status) status.textContent = text;
  }

  function fallback(field) {
    // Without the asynchronous clipboard (plain http outside localhost): select and copy.
    field.focus();
    field.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    var field = document.getElementById(button.dataset.copy);
    if (!field) return;
    var text = field.value !== undefined ? field.value : field.textContent;
    var done = function () { report(button, button.dataset.copied); };
    var failed = function () { report(button, fallback(field) ? button.dataset.copied : button.dataset.copyFailed); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  });
})();
