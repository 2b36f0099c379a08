// The little behaviour htmx does not cover: toasts, the model dialog, keyboard shortcuts, copying.
(function () {
  "use strict";

  function toast(message, level) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = document.createElement("div");
    el.className = "toast " + (level || "info");
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.textContent = message;
    box.appendChild(el);
  }

  // The toasts are a popover so that they show above an open dialog. The top layer stacks things in
  // the order they enter it, so the popover enters again whenever a toast or a dialog arrives.
  const toastBox = document.getElementById("toasts");
  function raiseToasts() {
    if (!toastBox || !toastBox.showPopover) return;
    if (toastBox.matches(":popover-open")) toastBox.hidePopover();
    if (toastBox.children.length) toastBox.showPopover();
  }
  if (toastBox) new MutationObserver(raiseToasts).observe(toastBox, { childList: true });

  // On a phone the main links and the folder types scroll sideways: bring the current one into view.
  // The folder types are drawn afresh with each choice, scrolled back to their start.
  function revealCurrent(row) {
    const current = row && row.querySelector("[aria-current]");
    if (!current) return;
    // The row's end fades out over its right padding: past that the link reads clearly.
    const visibleEnd = row.getBoundingClientRect().right - parseFloat(getComputedStyle(row).paddingRight);
    const hidden = current.getBoundingClientRect().right - visibleEnd;
    if (hidden > 0) row.scrollLeft += hidden + 8;
  }
  revealCurrent(document.querySelector(".topnav"));
  let typesRow = null;
  function revealCurrentType() {
    const row = document.querySelector(".types");
    if (row === typesRow) return;
    typesRow = row;
    revealCurrent(row);
  }
  revealCurrentType();
  document.body.addEventListener("htmx:afterSettle", revealCurrentType);

  // Toasts fade out by CSS; remove them once the animation ends.
  document.addEventListener("animationend", function (e) {
    if (e.target.classList && e.target.classList.contains("toast")) e.target.remove();
  });

  document.body.addEventListener("toast", function (e) {
    toast(e.detail.message, e.detail.level);
  });

  // The socket tells every page that shows a list about each change to it. When this page made the
  // change itself (Remove, Clear finished) and its own answer came first, the news finds its row gone:
  // nothing is left to do, and htmx would report the missing row as an error.
  function swapsByOwnId(part) {
    const how = part.getAttribute("hx-swap-oob");
    return part.id && (how === null || how === "true" || how === "outerHTML" || how === "delete");
  }
  document.body.addEventListener("htmx:wsBeforeMessage", function (e) {
    const message = document.createElement("template");
    message.innerHTML = e.detail.message;
    const parts = Array.from(message.content.children);
    if (parts.length && parts.every(function (part) { return swapsByOwnId(part) && !document.getElementById(part.id); })) {
      e.preventDefault();
    }
  });

  // A failed request never fails silently.
  document.body.addEventListener("htmx:responseError", function (e) {
    const xhr = e.detail.xhr;
    let text = xhr.status === 0 ? "The server cannot be reached." : "Request failed (" + xhr.status + ").";
    if (xhr.responseText && xhr.responseText.length < 300 && !/^\s*</.test(xhr.responseText)) text = xhr.responseText;
    toast(text, "error");
  });
  document.body.addEventListener("htmx:sendError", function () {
    toast("The server cannot be reached.", "error");
  });

  // A refresh of the library asks for as many cards as the grid shows: a user who scrolled down to the
  // model they renamed stays there.
  // Its answer holds the filters as they were when it was asked: when the user has typed a search or
  // picked a filter since, it would throw that away, so it is asked again with the filters of now.
  document.body.addEventListener("htmx:configRequest", function (e) {
    if (!e.detail.elt.hasAttribute("data-library-refresh")) return;
    e.detail.parameters.shown = document.querySelectorAll("#grid .card").length;
  });
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    const form = document.getElementById("filters");
    const asked = e.detail.requestConfig;  // e.detail.elt is the target here, not the asking element
    if (!form || !asked || !asked.elt.hasAttribute("data-library-refresh")) return;
    const sent = asked.parameters;
    const now = new FormData(form);
    const changed = Array.from(now.keys()).some(function (name) { return String(sent[name] ?? "") !== now.get(name); });
    if (!changed) return;
    e.detail.shouldSwap = false;
    htmx.trigger(document.body, "libraryChanged");
  });

  // A fold the user opened (a <details> with an id) stays open when htmx draws its part again: the
  // library read again behind them (a scan that ends) would otherwise close "N empty types" under the
  // pointer. The Civitai menu needs none of this: it is kept whole (hx-preserve).
  let openFolds = [];
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    const target = e.detail.target;
    openFolds = target ? Array.from(target.querySelectorAll("details[id][open]"), function (d) { return d.id; }) : [];
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    openFolds.forEach(function (id) {
      const fold = document.getElementById(id);
      if (fold && fold.tagName === "DETAILS") fold.open = true;
    });
    openFolds = [];
  });

  // Dialog content arrives by htmx; open it once it is in place. A model's own address brings it with
  // the page.
  const pageDialog = document.getElementById("dialog");
  if (pageDialog && pageDialog.children.length) { pageDialog.showModal(); raiseToasts(); }
  document.body.addEventListener("htmx:afterSwap", function (e) {
    const target = e.detail.target;
    if (target && target.tagName === "DIALOG" && !target.open) { target.showModal(); raiseToasts(); }
  });
  document.addEventListener("click", function (e) {
    const dialog = e.target;
    if (dialog.tagName === "DIALOG" && dialog.open) dialog.close(); // a click on the backdrop
  });
  // While downloads run, the tab's title says how far they are together, as download managers do, for
  // a user who went on in another tab: "45 % · 2 downloading · Downloads · Model Manager".
  if (document.getElementById("download-tasks")) {
    const pageTitle = document.title;
    const showProgressInTitle = function () {
      const running = document.querySelectorAll("#download-tasks .task.status-running");
      let done = 0, total = 0;
      running.forEach(function (row) {
        if (Number(row.dataset.total) > 0) { done += Number(row.dataset.done); total += Number(row.dataset.total); }
      });
      const percent = total ? Math.floor(done * 100 / total) + " % · " : "";
      document.title = running.length ? percent + running.length + " downloading · " + pageTitle : pageTitle;
    };
    // The rows are drawn anew as their news comes (and the list itself by Clear finished): watch the page.
    new MutationObserver(showProgressInTitle).observe(document.getElementById("main"), {subtree: true, childList: true});
    showProgressInTitle();
  }

  // A link pasted or dropped on a page, outside a text box, is taken as a new download: the dialog
  // opens at its second step, as if the link had been pasted into New download and Next pressed. Several
  // links, one a line, open Several links with them, to be looked over. A link of the app's own (a card
  // dragged about) is none.
  function isDownloadLink(line) {
    if (!/^(https?:\/\/|urn:air:)\S+$/i.test(line)) return false;
    try { return new URL(line).origin !== location.origin; } catch (err) { return true; /* the server says why */ }
  }
  function downloadLinksIn(text) {
    const lines = (text || "").split(/\r?\n/).map(function (line) { return line.trim(); })
      .filter(function (line) { return line && !line.startsWith("#"); });  // text/uri-list has comments
    if (lines.length > 1 && lines.every(isDownloadLink)) return lines;
    return lines.length && isDownloadLink(lines[0]) ? [lines[0]] : [];
  }
  function takesLinks(e) {
    return pageDialog && !pageDialog.open && pageDialog.dataset.downloadLink &&
      !(e.target.closest && e.target.closest("input, textarea, select, [contenteditable], dialog, [data-drop-zone]"));
  }
  function openDownload(links) {
    if (links.length > 1) {
      htmx.ajax("GET", pageDialog.dataset.downloadLinks, {target: pageDialog, values: {urls: links.join("\n")}});
    } else {
      htmx.ajax("GET", pageDialog.dataset.downloadLink, {target: pageDialog, values: {url: links[0]}});
    }
  }
  document.addEventListener("paste", function (e) {
    const links = takesLinks(e) ? downloadLinksIn(e.clipboardData && e.clipboardData.getData("text/plain")) : [];
    if (links.length) { e.preventDefault(); openDownload(links); }
  });
  function draggingLink(e) {
    return takesLinks(e) && e.dataTransfer && Array.from(e.dataTransfer.types).includes("text/uri-list");
  }
  document.addEventListener("dragover", function (e) { if (draggingLink(e)) e.preventDefault(); });
  document.addEventListener("drop", function (e) {
    if (!draggingLink(e)) return;
    e.preventDefault();  // else the browser would leave the page for the link
    const links = downloadLinksIn(e.dataTransfer.getData("text/uri-list"));
    if (links.length) openDownload(links);
  });
  // A workflow (a .json ComfyUI saved, or an image it made, or made with A1111 or on Civitai) dropped
  // on a page, outside a drop zone, opens the models it needs. A link dragged along with it was taken above.
  function draggingFile(e) {
    return takesLinks(e) && pageDialog.dataset.downloadWorkflow && e.dataTransfer &&
      Array.from(e.dataTransfer.types).includes("Files");
  }
  document.addEventListener("dragover", function (e) { if (draggingFile(e)) e.preventDefault(); });
  document.addEventListener("drop", function (e) {
    if (e.defaultPrevented || !draggingFile(e)) return;
    e.preventDefault();  // else the browser would leave the page to show the file
    const workflow = Array.from(e.dataTransfer.files).find(function (file) { return /\.(json|png|jpe?g|webp)$/i.test(file.name); });
    if (!workflow) return;
    htmx.ajax("GET", pageDialog.dataset.downloadWorkflow, {target: pageDialog}).then(function () {
      const input = pageDialog.querySelector("input[name=workflow]");
      const files = new DataTransfer();
      files.items.add(workflow);
      input.files = files.files;
      input.form.requestSubmit();
    });
  });
  // An answer that put its news elsewhere (a move handed to the worker) has nothing left to show.
  document.body.addEventListener("closeDialog", function () { if (pageDialog && pageDialog.open) pageDialog.close(); });
  // A card (or a row of Duplicates) the dialog removes (a delete) leaves its neighbour to take the focus
  // when the dialog closes; by id, since the grid is drawn again meanwhile.
  const REMOVABLE = ".card, .dup-row";
  let neighbourOfRemoved = "";
  document.body.addEventListener("htmx:oobBeforeSwap", function (e) {
    const card = e.detail.target;
    if (!card.matches(REMOVABLE)) return;
    const next = card.nextElementSibling, previous = card.previousElementSibling;
    const neighbour = next && next.matches(REMOVABLE) ? next : previous && previous.matches(REMOVABLE) ? previous : null;
    neighbourOfRemoved = neighbour ? neighbour.id : "";
  });
  document.addEventListener("close", function (e) {
    if (e.target.id !== "dialog") return;  // the one htmx fills; the others keep their content
    // Closed, the model's own address gives way to the library's that shows behind it.
    if (e.target.dataset.closeUrl) {
      history.replaceState(history.state, "", e.target.dataset.closeUrl);
      delete e.target.dataset.closeUrl;
    }
    // The browser gives the focus back to the card that opened the dialog; when the grid was drawn
    // again meanwhile (a rename), that card is gone, and the same model's new card takes it instead.
    const detail = e.target.querySelector(".model-detail");
    const card = (detail && detail.id && document.getElementById(detail.id.replace("model-detail-", "card-"))) ||
      (neighbourOfRemoved && document.getElementById(neighbourOfRemoved));
    neighbourOfRemoved = "";
    // A row of Duplicates is not focusable itself: its Delete button, the next thing to press, is.
    const focusable = card && (card.matches("a, button") ? card : card.querySelector("button.danger"));
    const focused = document.activeElement;
    if (focusable && (!focused || focused === document.body || e.target.contains(focused))) {
      focusable.focus({ preventScroll: true });
    }
    e.target.replaceChildren();
  }, true);

  // One-key shortcuts ("/" search, "n" new download, "?" this list): the element that declares the key
  // (aria-keyshortcuts) is focused when it is a text box, else clicked. Never while typing or in a dialog.
  document.addEventListener("keydown", function (e) {
    if (e.key.length !== 1 || e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (document.activeElement && document.activeElement.tagName) || "";
    if (/INPUT|TEXTAREA|SELECT/.test(tag) || document.querySelector("dialog[open]")) return;
    const target = document.querySelector('[aria-keyshortcuts="' + CSS.escape(e.key) + '"]');
    if (!target) return;
    e.preventDefault();
    if (target.matches("input")) { target.focus(); target.select(); } else target.click();
  });

  document.addEventListener("click", function (e) {
    const opener = e.target.closest && e.target.closest("[data-opens]");
    const dialog = opener && document.getElementById(opener.dataset.opens);
    if (dialog) dialog.showModal();
  });

  // Grid or List: the grid switches here at once (the button's own request keeps the choice with the
  // account), and the shortcut goes to the other button, so that "v" always switches.
  document.addEventListener("click", function (e) {
    const chosen = e.target.closest && e.target.closest("[data-layout]");
    const grid = document.getElementById("grid");
    if (!chosen || !grid) return;
    grid.classList.toggle("list", chosen.dataset.layout === "list");
    document.querySelectorAll("[data-layout]").forEach(function (button) {
      const pressed = button === chosen;
      button.setAttribute("aria-pressed", String(pressed));
      if (pressed) button.removeAttribute("aria-keyshortcuts"); else button.setAttribute("aria-keyshortcuts", "v");
    });
  });

  // Example images: the one picked (a click, or the arrow keys in their row) shows its prompt and settings.
  document.addEventListener("change", function (e) {
    const picked = e.target.closest && e.target.closest(".example-thumbs input[type=radio]");
    if (!picked) return;
    picked.closest(".examples").querySelectorAll(".example").forEach(function (example) {
      example.hidden = example.id !== picked.value;
    });
  });

  // Arrow keys move between cards as in a file manager: Tab would walk through every card in turn.
  // Up and down keep the column; the number of columns is how many cards share the first card's row.
  document.addEventListener("keydown", function (e) {
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: "up", ArrowDown: "down" }[e.key];
    const card = step && !e.ctrlKey && !e.metaKey && !e.altKey && !e.shiftKey && document.activeElement;
    if (!card || !card.matches || !card.matches(".grid > .card")) return;  // the library's, Browse's
    const cards = Array.from(card.parentElement.querySelectorAll(":scope > .card"));
    const columns = cards.filter(function (c) { return c.offsetTop === cards[0].offsetTop; }).length;
    const at = cards.indexOf(card) + (step === "up" ? -columns : step === "down" ? columns : step);
    const next = cards[Math.max(0, Math.min(cards.length - 1, at))];
    e.preventDefault();
    if (next !== card && (step === "down" || at === cards.indexOf(next))) next.focus();
  });

  // Select mode: a click, Enter or Space on a card picks it instead of opening it, and the bar below the
  // grid acts on the picked models. The picks are kept here, by card id, as the grid is drawn again.
  let selectMode = false;
  const picked = new Map();  // card id → the model's size in bytes
  // As Django's filesizeformat writes it on the cards: "66 bytes", "14.0 KB", "1.9 GB", a no-break space
  // before the unit.
  function sizeText(bytes) {
    if (bytes < 1024) return bytes + (bytes === 1 ? "\u00a0byte" : "\u00a0bytes");
    const units = ["KB", "MB", "GB", "TB", "PB"];
    let value = bytes / 1024, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return value.toFixed(1) + "\u00a0" + units[unit];
  }
  function showPicks() {
    const toggle = document.getElementById("select-toggle");
    const bar = document.getElementById("selection-bar");
    if (!toggle || !bar) return;
    toggle.setAttribute("aria-pressed", String(selectMode));
    document.querySelectorAll("#grid > .card").forEach(function (card) {
      if (selectMode) {
        card.setAttribute("role", "checkbox");
        card.setAttribute("aria-checked", String(picked.has(card.id)));
      } else {
        card.removeAttribute("role");
        card.removeAttribute("aria-checked");
      }
    });
    bar.hidden = !selectMode;
    bar.querySelectorAll("input[name=ids]").forEach(function (input) { input.remove(); });
    let bytes = 0;
    picked.forEach(function (size, id) {
      bytes += size;
      const input = document.createElement("input");
      input.type = "hidden"; input.name = "ids"; input.value = id.replace("card-", "");
      bar.appendChild(input);
    });
    document.getElementById("selection-count").textContent =
      picked.size ? picked.size + " picked · " + sizeText(bytes) : "None picked: click the models to act on";
    bar.querySelectorAll("button[hx-post]").forEach(function (b) { b.disabled = !picked.size; });
  }
  function setSelectMode(on) {
    selectMode = on;
    if (!on) picked.clear();
    showPicks();
  }
  function togglePick(card) {
    if (picked.has(card.id)) picked.delete(card.id); else pick(card);
    showPicks();
  }
  function pick(card) { picked.set(card.id, Number(card.dataset.size) || 0); }
  document.addEventListener("click", function (e) {
    if (!e.target.closest) return;
    if (e.target.closest("#select-toggle")) { setSelectMode(!selectMode); return; }
    if (e.target.closest("[data-ends-selection]")) { setSelectMode(false); return; }
    if (e.target.closest("[data-picks-all-shown]")) {
      document.querySelectorAll("#grid > .card").forEach(pick);
      showPicks();
      return;
    }
    const card = selectMode && e.target.closest("#grid > .card");
    if (!card) return;
    e.preventDefault();
    e.stopPropagation();  // captured before htmx, which would open the model's dialog
    togglePick(card);
  }, true);
  document.addEventListener("keydown", function (e) {
    if (!selectMode || document.querySelector("dialog[open]")) return;
    const card = document.activeElement && document.activeElement.closest && document.activeElement.closest("#grid > .card");
    if (e.key === " " && card) { e.preventDefault(); togglePick(card); }
    if (e.key === "Escape") setSelectMode(false);
  });
  document.body.addEventListener("htmx:afterSettle", showPicks);
  document.body.addEventListener("selectionDone", function () { setSelectMode(false); });

  // Ctrl+Enter (⌘+Enter) sends the form, from its text area too, where Enter starts a new line: a
  // description, a list of links.
  document.addEventListener("keydown", function (e) {
    const field = e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.closest && e.target.closest("textarea, input");
    if (field && field.form) { e.preventDefault(); field.form.requestSubmit(); }
  });

  // A menu (details.menu) closes once one of its actions is chosen, on a click elsewhere, and on Escape.
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(e.target) || e.target.closest(".menu-items button")) menu.open = false;
    });
  });
  document.addEventListener("keydown", function (e) {
    const menu = e.key === "Escape" && e.target.closest && e.target.closest("details.menu[open]");
    if (menu) { menu.open = false; menu.querySelector("summary").focus(); }
  });

  // Drag and drop an image onto the preview form's drop zone.
  document.addEventListener("dragover", function (e) {
    const zone = e.target.closest && e.target.closest("[data-drop-zone]");
    if (zone) { e.preventDefault(); zone.classList.add("dragging"); }
  });
  document.addEventListener("dragleave", function (e) {
    const zone = e.target.closest && e.target.closest("[data-drop-zone]");
    if (zone) zone.classList.remove("dragging");
  });
  document.addEventListener("drop", function (e) {
    const zone = e.target.closest && e.target.closest("[data-drop-zone]");
    if (!zone || !e.dataTransfer.files.length) return;
    e.preventDefault();
    zone.classList.remove("dragging");
    const input = zone.querySelector("input[type=file]");
    input.files = e.dataTransfer.files;
    zone.closest("form").requestSubmit();
  });

  // A click on a trigger word or a training tag copies it, for the prompt.
  function copyText(text, near) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on the LAN has no clipboard API; the old way works there. The text area goes next
    // to the button: outside an open dialog it would be inert, and could not be selected.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    near.after(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied ? Promise.resolve() : Promise.reject(new Error("refused"));
  }
  document.addEventListener("click", function (e) {
    const button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    copyText(text, button).then(
      function () { toast("Copied “" + text + "”.", "success"); },
      function () { toast("The browser did not let the page copy; select the text instead.", "error"); }
    );
  });

  // A preview that cannot be read (not an image, gone since the scan) shows the card's placeholder, not
  // the browser's broken-image icon. An image may have failed before this script ran: look for those too.
  function replaceBrokenPreview(img) {
    if (img.tagName !== "IMG" || !img.hasAttribute("data-initials")) return;
    const placeholder = document.createElement("div");
    placeholder.className = "placeholder" + (img.closest(".detail-preview") ? " large" : "");
    placeholder.dataset.type = img.dataset.type;
    placeholder.append(document.createElement("span"), document.createElement("small"));
    placeholder.firstChild.textContent = img.dataset.initials;
    placeholder.lastChild.textContent = "preview unreadable";
    img.replaceWith(placeholder);
  }
  document.addEventListener("error", function (e) { replaceBrokenPreview(e.target); }, true);
  document.querySelectorAll("img[data-initials]").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0 && img.currentSrc) replaceBrokenPreview(img);
  });

  // Video previews play while their card is pointed at or focused, and stop when it no longer is: a
  // grid swept by the mouse would otherwise keep every video it crossed playing.
  function cardVideo(target) {
    const card = target && target.closest && target.closest(".card");
    return card ? card.querySelector("video") : null;
  }
  function playOrPause(play) {
    return function (e) {
      const video = cardVideo(e.target);
      if (!video || video === cardVideo(e.relatedTarget)) return;  // still within the same card
      if (play && video.paused) video.play().catch(function () {});
      if (!play) video.pause();
    };
  }
  document.addEventListener("mouseover", playOrPause(true));
  document.addEventListener("focusin", playOrPause(true));
  document.addEventListener("mouseout", playOrPause(false));
  document.addEventListener("focusout", playOrPause(false));
})();
