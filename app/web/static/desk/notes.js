// A complaint's notes and attached files on its case page. Whoever may read the complaint
// reads both; whoever may act on it writes notes and attaches files (the notes' rule of
// app/complaints/notes_router.py), so the forms are shown only then.

import { allPages, api, describe } from "../js/api.js";
import { h, replace, text } from "../js/dom.js";
import { t } from "../js/i18n.js";
import { announce, clearErrors, showError } from "../js/page.js";
import { when } from "./format.js";
import { save } from "./download.js";

function noteItem(note, people) {
  return h(
    "li",
    { class: "note", dataset: { id: note.id } },
    h("p", { class: "meta" }, h("time", { datetime: note.at, text: when(note.at) }), " · ", people.name(note.author_id), " · ", h("span", { class: `badge ${note.internal ? "muted" : "ok"}`, text: t(note.internal ? "desk.notes.internal" : "desk.notes.public") })),
    h("p", { class: "user-text", text: note.text }),
  );
}

function noteForm(complaint, reload) {
  const area = h("textarea", { id: "note-text", name: "text", maxlength: 10000, required: true });
  const publicNote = h("input", { type: "checkbox", id: "note-public", name: "public" });
  const problem = h("p", { class: "field-error", role: "alert" });
  const form = h(
    "form",
    { id: "note-form", novalidate: true },
    h("label", { for: "note-text", text: t("desk.notes.add") }),
    area,
    h("label", { class: "choice", for: "note-public" }, publicNote, t("desk.notes.for_customer")),
    problem,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "note-submit", text: t("desk.notes.save") })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!area.value.trim()) {
      text(problem, t("desk.missing", { fields: t("desk.notes.text") }));
      area.focus();
      return;
    }
    clearErrors();
    try {
      await api(`/api/v1/complaints/${complaint.id}/notes`, { method: "POST", json: { text: area.value, internal: !publicNote.checked } });
      area.value = "";
      publicNote.checked = false;
      text(problem, "");
      announce(t("desk.notes.saved"));
      await reload();
    } catch (error) {
      text(problem, describe(error));
    }
  });
  return form;
}

export async function notesPanel(container, { complaint, people, acting }) {
  const list = h("ol", { class: "plain notes", id: "notes" });
  const reload = async () => {
    try {
      const notes = await allPages(`/api/v1/complaints/${complaint.id}/notes`);
      await people.load(notes.map((n) => n.author_id));
      replace(list, ...(notes.length ? notes.map((n) => noteItem(n, people)) : [h("li", { class: "empty", text: t("desk.notes.none") })]));
    } catch (error) {
      showError(error);
    }
  };
  replace(container, list, acting ? noteForm(complaint, reload) : null);
  await reload();
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function fileItem(file, complaint) {
  const download = async () => {
    try {
      await save(await api(`/api/v1/complaints/${complaint.id}/attachments/${file.id}`, { raw: true, headers: { Accept: "*/*" } }), file.name);
    } catch (error) {
      showError(error);
    }
  };
  return h(
    "li",
    { class: "file", dataset: { id: file.id } },
    h("button", { type: "button", class: "secondary", on: { click: download }, "aria-label": t("desk.files.download_named", { name: file.name }) }, t("desk.files.download")),
    " ",
    h("span", { class: "user-text", text: file.name }),
    h("span", { class: "meta", text: ` · ${size(file.size)} · ${file.content_type} · ${when(file.uploaded_at)}` }),
  );
}

function fileForm(complaint, reload) {
  const input = h("input", { type: "file", id: "file-input", name: "file" });
  const problem = h("p", { class: "field-error", role: "alert" });
  const form = h(
    "form",
    { id: "file-form", novalidate: true },
    h("label", { for: "file-input", text: t("desk.files.add") }),
    input,
    problem,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "file-submit", text: t("desk.files.upload") })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      text(problem, t("desk.missing", { fields: t("desk.files.file") }));
      input.focus();
      return;
    }
    const body = new FormData();
    body.append("file", input.files[0]);
    try {
      await api(`/api/v1/complaints/${complaint.id}/attachments`, { method: "POST", body });
      input.value = "";
      text(problem, "");
      announce(t("desk.files.saved"));
      await reload();
    } catch (error) {
      text(problem, describe(error));
    }
  });
  return form;
}

export async function filesPanel(container, { complaint, acting }) {
  const list = h("ul", { class: "plain files", id: "files" });
  const reload = async () => {
    try {
      const files = await allPages(`/api/v1/complaints/${complaint.id}/attachments`);
      replace(list, ...(files.length ? files.map((f) => fileItem(f, complaint)) : [h("li", { class: "empty", text: t("desk.files.none") })]));
    } catch (error) {
      showError(error);
    }
  };
  replace(container, list, acting ? fileForm(complaint, reload) : null);
  await reload();
}
