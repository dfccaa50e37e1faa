// What the browser test reads from (and does in) the JupyterLab page.
// Injected into every page as window.labkitProbe; the test calls its functions
// with page.evaluate. It needs JupyterLab started with
// --LabApp.expose_app_in_browser=True (window.jupyterapp).
window.labkitProbe = (() => {
  const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";
  const WIDGET_FAILED = /Error (displaying|rendering) widget|Loading widget\.\.\./;
  let panel = null; // the NotebookPanel under test
  const requests = { sent: 0, answered: 0 }; // execute_requests since watch()

  const kernelOf = () => {
    const s = panel.sessionContext.session;
    return s ? s.kernel : null;
  };

  return {
    // Find the opened notebook's panel and focus it: "ok" or why not.
    async findPanel(path) {
      const app = window.jupyterapp;
      if (!app) return "JupyterLab app not exposed";
      await app.restored;
      for (const w of app.shell.widgets("main")) {
        if (w.context && w.context.path === path && w.content && w.content.widgets) {
          panel = w;
          app.shell.activateById(w.id);
          await w.context.ready;
          return "ok";
        }
      }
      return "notebook tab not open yet";
    },

    session() {
      const k = kernelOf();
      return {
        ready: panel.sessionContext.isReady,
        kernel: k ? k.name : null,
        status: k ? k.status : null,
      };
    },

    async changeKernel(name) {
      await panel.sessionContext.changeKernel({ name });
    },

    // Stored outputs and counts would pass for this run's: clear them first.
    async clearOutputs() {
      await window.jupyterapp.commands.execute("notebook:clear-all-cell-outputs");
      return panel.content.widgets.filter(
        (c) => c.model.type === "code" &&
          (c.model.executionCount != null || c.model.outputs.length > 0)
      ).length;
    },

    // Count execute requests and replies from now on. The [*] prompts cannot
    // tell when Run All is over: after an error in a cell tagged
    // raises-exception, JupyterLab clears the [*] of every queued cell while
    // the kernel goes on running them.
    watch() {
      kernelOf().anyMessage.connect((_, { msg, direction }) => {
        const type = msg.header.msg_type;
        if (direction === "send" && type === "execute_request") requests.sent++;
        if (direction === "recv" && type === "execute_reply") requests.answered++;
      });
    },

    progress() {
      let running = 0;
      let executed = 0;
      for (const cell of panel.content.widgets) {
        const prompt = cell.node.querySelector(".jp-InputPrompt");
        if (prompt && prompt.textContent.includes("[*]")) running++;
        if (cell.model.type === "code" && cell.model.executionCount != null) executed++;
      }
      const k = kernelOf();
      return { status: k ? k.status : null, running, executed, ...requests };
    },

    // Still changing: widget views loading, images decoding.
    pending() {
      const n = panel.node;
      const outs = [...n.querySelectorAll(".jp-OutputArea-output")];
      return {
        widgets: n.querySelectorAll(".jp-OutputArea .jupyter-widgets").length,
        loading: outs.filter((o) => /Loading widget\.\.\./.test(o.textContent)).length,
        images: [...n.querySelectorAll(".jp-OutputArea img")].filter((i) => !i.complete)
          .length,
      };
    },

    // One record per cell: what a learner sees after Run All.
    report() {
      return panel.content.widgets.map((cell, index) => {
        const model = cell.model;
        const tags = model.getMetadata("tags") || [];
        const source = model.sharedModel.getSource();
        // The first line that says something (not an nbval marker), for messages.
        const first = source.split("\n").find((l) => l.trim() && !/^# NBVAL_/.test(l));
        const rec = {
          index,
          type: model.type,
          source: (first || "").trim().slice(0, 80),
          blank: !source.trim(), // JupyterLab does not run an empty cell
          nbvalRaises: source.includes("NBVAL_RAISES_EXCEPTION"),
          expectsError: Array.isArray(tags) && tags.includes("raises-exception"),
          executed: model.type === "code" && model.executionCount != null,
          running: (cell.node.querySelector(".jp-InputPrompt") || {}).textContent === "[*]:",
          errors: [],
          widgetOutputs: 0,
          widgetsRendered: 0,
          widgetsFailed: 0,
          images: 0,
          imagesBroken: 0,
        };
        if (model.type !== "code") return rec;
        for (const o of model.outputs.toJSON()) {
          if (o.output_type === "error") {
            rec.errors.push({ ename: o.ename, evalue: String(o.evalue).slice(0, 300) });
          }
          if (o.data && o.data[WIDGET_MIME]) rec.widgetOutputs++;
        }
        // Printed tracebacks: a thread's (stderr stream) or a widget callback's
        // (shown inside the widget's Output, which is not in the cell's outputs).
        const printed = model.outputs.toJSON()
          .filter((o) => o.output_type === "stream" && o.name === "stderr")
          .map((o) => [].concat(o.text).join(""));
        for (const e of cell.node.querySelectorAll(
          ".jupyter-widgets .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
        )) {
          printed.push(e.textContent);
        }
        for (const text of printed.filter((t) => t.includes("Traceback"))) {
          const last = text.trim().split("\n").pop();
          rec.errors.push({ ename: "Traceback printed", evalue: last.slice(0, 300) });
        }
        for (const out of cell.node.querySelectorAll(".jp-OutputArea-output")) {
          const view = out.querySelector(".jupyter-widgets");
          if (view && !out.parentElement.closest(".jupyter-widgets")) rec.widgetsRendered++;
          if (WIDGET_FAILED.test(out.textContent)) rec.widgetsFailed++;
        }
        for (const img of cell.node.querySelectorAll(".jp-OutputArea img")) {
          rec.images++;
          if (!(img.complete && img.naturalWidth > 0)) rec.imagesBroken++;
        }
        return rec;
      });
    },

    // The notebook's scrolling element, tagged for scrollTo.
    scroller() {
      const root = panel.content.node;
      const candidates = [root, ...root.querySelectorAll("*")].filter((e) => {
        const oy = getComputedStyle(e).overflowY;
        return (oy === "auto" || oy === "scroll") && !e.closest(".jp-OutputArea");
      });
      candidates.sort((a, b) => b.clientHeight - a.clientHeight);
      const s = candidates[0] || root;
      document.querySelectorAll("[data-labkit-scroller]")
        .forEach((e) => e.removeAttribute("data-labkit-scroller"));
      s.setAttribute("data-labkit-scroller", "1");
      return { scrollHeight: s.scrollHeight, clientHeight: s.clientHeight };
    },

    // Scroll cell ``index`` to the top of the notebook's view.
    async showCell(index) {
      panel.content.widgets[index].node.scrollIntoView({ block: "start" });
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    },

    async scrollTo(y) {
      const s = document.querySelector("[data-labkit-scroller]");
      s.scrollTop = y;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    },
  };
})();
