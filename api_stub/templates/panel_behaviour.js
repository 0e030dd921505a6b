  // The panel's keyboard behaviour, its self-refresh and its times (docs/panel.md). Runs after
  // the page's first script, which opens ([data-open]) and closes ([data-close]) the modals.
  (function () {
    "use strict";
    var CONTROLS = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), " +
      "select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";
    var FIELDS = "input:not([type=hidden]):not([readonly]):not([disabled]), " +
      "select:not([disabled]), textarea:not([disabled])";

    function controls(dialog) {
      return Array.prototype.filter.call(dialog.querySelectorAll(CONTROLS), function (el) {
        return el.getClientRects().length > 0;
      });
    }
    // A refused field first, then the first field to fill, then the first control (Cancel in a
    // confirmation: Enter on it never confirms by accident).
    function firstField(dialog) {
      return dialog.querySelector("[aria-invalid=true]") || dialog.querySelector(FIELDS) ||
        controls(dialog)[0];
    }
    function focusFirst(dialog) {
      var first = firstField(dialog);
      if (first) { first.focus(); }
    }

    // Opened from a button (a click, Enter or Space): focus goes to the first field, and back to
    // that button when the modal closes (the menu it sits in opens again around it).
    document.querySelectorAll("[data-open]").forEach(function (opener) {
      opener.addEventListener("click", function () {
        var dialog = document.getElementById(opener.dataset.open);
        if (!dialog || !dialog.open) { return; }
        dialog.rrOpener = opener;
        focusFirst(dialog);
      });
    });
    document.querySelectorAll("dialog").forEach(function (dialog) {
      if (dialog.open) { focusFirst(dialog); }  // reopened on load with a refused field
      dialog.addEventListener("close", function () {
        var opener = dialog.rrOpener;
        dialog.rrOpener = null;
        if (!opener || !document.contains(opener)) { return; }
        var menu = opener.closest("details");
        if (menu) { menu.open = true; }
        opener.focus();
      });
      // Tab and Shift+Tab go round the modal's own controls, never out of it. (Escape closes a
      // modal <dialog> natively: its "cancel", then "close" above.)
      dialog.addEventListener("keydown", function (event) {
        if (event.key !== "Tab") { return; }
        var items = controls(dialog);
        if (!items.length) { return; }
        var first = items[0], last = items[items.length - 1];
        var at = document.activeElement;
        if (!dialog.contains(at) || at === dialog) {
          event.preventDefault();
          (event.shiftKey ? last : first).focus();
        } else if (event.shiftKey && at === first) {
          event.preventDefault();
          last.focus();
        } else if (!event.shiftKey && at === last) {
          event.preventDefault();
          first.focus();
        }
      });
    });

    // The "Connected to PagerDuty" menu: Escape closes it and leaves focus on its button.
    document.querySelectorAll("details.connected-menu").forEach(function (menu) {
      menu.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && menu.open) {
          menu.open = false;
          menu.querySelector("summary").focus();
        }
      });
    });

    // Times in the viewer's own time zone, to the second; the title keeps UTC.
    var format = new Intl.DateTimeFormat(undefined, {
      weekday: "short", year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[data-local]").forEach(function (t) {
      var at = new Date(t.getAttribute("datetime"));
      if (isNaN(at.getTime())) { return; }
      t.textContent = format.format(at);
    });

    // While something is under way the page reloads itself, but never under someone's hands:
    // not while a modal is open or a text field has focus (it waits, then tries again).
    var seconds = Number(document.body.dataset.refreshSeconds || 0);
    if (seconds > 0) {
      var tick = function () {
        var at = document.activeElement;
        var typing = at && at.matches && at.matches("input:not([type=hidden]), textarea");
        if (document.querySelector("dialog[open]") || typing) {
          window.setTimeout(tick, seconds * 1000);
        } else {
          window.location.reload();
        }
      };
      window.setTimeout(tick, seconds * 1000);
    }
  })();
