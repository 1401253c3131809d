// The file tabs and their CodeMirror 6 editor: one EditorState per file, one view.

import { basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { StreamLanguage } from "@codemirror/language";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { python } from "@codemirror/legacy-modes/mode/python";
import { c, cpp, java } from "@codemirror/legacy-modes/mode/clike";
import { go } from "@codemirror/legacy-modes/mode/go";
import { rust } from "@codemirror/legacy-modes/mode/rust";
import { javascript } from "@codemirror/legacy-modes/mode/javascript";

const MODES = { sh: shell, py: python, c, h: c, cc: cpp, cpp, hpp: cpp, java, go, rs: rust, js: javascript, mjs: javascript };

function languageFor(name) {
  const mode = MODES[name.split(".").pop()];
  return mode ? [StreamLanguage.define(mode)] : [];
}

export class FileEditor {
  constructor(tabsElement, editorElement) {
    this.tabs = tabsElement;
    this.files = new Map();  // name -> EditorState, in tab order
    this.current = null;
    this.view = new EditorView({ parent: editorElement });
  }

  // Replaces every file: `files` is [[name, content], ...].
  setFiles(files) {
    this.files.clear();
    for (const [name, content] of files) this.files.set(name, this.makeState(name, content));
    this.select(files.length ? files[0][0] : null);
  }

  makeState(name, content) {
    return EditorState.create({ doc: content, extensions: [basicSetup, languageFor(name)] });
  }

  add(name, content = "") {
    if (!this.files.has(name)) this.files.set(name, this.makeState(name, content));
    this.select(name);
  }

  remove(name) {
    this.files.delete(name);
    this.select(this.files.size ? this.files.keys().next().value : null);
  }

  select(name) {
    if (this.current !== null && this.files.has(this.current))
      this.files.set(this.current, this.view.state);
    this.current = name;
    if (name !== null) this.view.setState(this.files.get(name));
    this.renderTabs();
  }

  renderTabs() {
    this.tabs.replaceChildren();
    for (const name of this.files.keys()) {
      const b = document.createElement("button");
      b.type = "button";
      b.role = "tab";
      b.textContent = name;
      b.dataset.file = name;
      if (name === this.current) b.classList.add("active");
      b.addEventListener("click", () => this.select(name));
      this.tabs.append(b);
    }
  }

  // [[name, content], ...] of every file, the open one's latest text included.
  contents() {
    if (this.current !== null) this.files.set(this.current, this.view.state);
    return [...this.files].map(([name, state]) => [name, state.doc.toString()]);
  }
}
