/* The portal's small behaviours, from data- attributes: the Content-Security-Policy allows no inline
   script (no onclick=, onchange=, <script> blocks) and no inline style (style=).

   data-confirm="question"   on a form: asks before it is submitted (on a button: before that button submits)
   data-autosubmit           on a select: submits its form when the choice changes
   data-select-on-click      on an input: selects its text when clicked (an API key to copy)
   data-print                on a button: prints the page
   data-flex="n"             on an element: its flex grow factor (a progress bar's segments)
   data-page-from="id" data-page-param="name"
                             on an htmx element: its requests carry the data-page of element #id as name
*/
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var question = (button && button.dataset.confirm) || form.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.matches && field.matches("select[data-autosubmit]") && field.form) {
      field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    if (target.matches("input[data-select-on-click]")) target.select();
    if (target.closest("[data-print]")) window.print();
  });

  function applyFlex(root) {
    var nodes = root.querySelectorAll ? root.querySelectorAll("[data-flex]") : [];
    for (var i = 0; i < nodes.length; i++) nodes[i].style.flex = nodes[i].dataset.flex;
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var source = event.detail.elt;
    if (!source.dataset || !source.dataset.pageFrom) return;
    var from = document.getElementById(source.dataset.pageFrom);
    event.detail.parameters[source.dataset.pageParam || "page"] = (from && from.dataset.page) || "";
  });

  // Content swapped in by htmx (and the page itself, once htmx has started).
  document.addEventListener("htmx:load", function (event) { applyFlex(event.detail.elt); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { applyFlex(document); });
  } else {
    applyFlex(document);
  }
})();
