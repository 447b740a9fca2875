// The "new connection" form, drawn from GET /api/connectors/{id}/connection-form.
// Labels, descriptions and tooltips come from the maker's definition: text only.
import { api } from "./api.js";
import { clear, el } from "./ui.js";

let counter = 0;

async function gatewayOptions() {
  try {
    const answer = await api("GET", "/api/gateways");
    return answer.value || [];
  } catch {
    return [];
  }
}

function control(field, id, describedBy, gateways) {
  const common = { id, name: field.name, "aria-describedby": describedBy || null, required: field.required };
  if (field.kind === "secret") {
    return el("input", { ...common, type: "password", autocomplete: "off", spellcheck: "false" });
  }
  if (field.kind === "number") return el("input", { ...common, type: "number", value: field.default ?? null });
  if (field.kind === "boolean") {
    return el("input", { ...common, type: "checkbox", checked: field.default === "true" });
  }
  if (field.kind === "choice" || field.kind === "gateway") {
    const options =
      field.kind === "choice"
        ? field.allowedValues.map((o) => ({ value: o.value, label: o.label }))
        : gateways.map((g) => ({ value: g.id, label: `${g.name} (${g.status || "unknown"})` }));
    const select = el("select", common);
    if (!field.required || field.kind === "gateway") select.append(el("option", { value: "", text: "Choose..." }));
    for (const option of options) {
      select.append(el("option", { value: option.value, selected: option.value === field.default, text: option.label }));
    }
    return select;
  }
  return el("input", { ...common, type: "text", value: field.default ?? null, autocomplete: "off" });
}

function fieldRow(field, gateways) {
  counter += 1;
  const id = `field-${counter}`;
  const notes = [field.description, field.tooltip].filter((t) => t && t !== field.label);
  const noteId = notes.length ? `${id}-note` : null;
  const input = control(field, id, noteId, gateways);
  const label = el("label", { for: id }, field.label, field.required ? el("span", { class: "req", text: " (required)" }) : null);
  const row = el("div", { class: field.kind === "boolean" ? "field check" : "field" });
  if (field.kind === "boolean") row.append(input, " ", label);
  else row.append(label, input);
  if (noteId) row.append(el("p", { id: noteId, class: "hint", text: notes.join(" ") }));
  if (field.kind === "gateway" && gateways.length === 0) {
    row.append(el("p", { class: "hint", text: "You have no on-premises data gateway yet: register one with `python -m functions gateway-agent register`." }));
  }
  return { row, input, field };
}

// Draws the form into `container`; returns collect() -> {parameterSet, parameters}.
export async function renderConnectionForm(container, form) {
  clear(container);
  const sets = form.parameterSets;
  const needsGateways = sets.some((s) => s.gateway || s.fields.some((f) => f.kind === "gateway"));
  const gateways = needsGateways ? await gatewayOptions() : [];
  let chosen = 0;
  let inputs = [];
  const fieldsBox = el("div", { class: "fields" });

  function drawFields() {
    clear(fieldsBox);
    const set = sets[chosen];
    if (set.description) fieldsBox.append(el("p", { class: "hint", text: set.description }));
    if (set.authType === "oauth2") {
      fieldsBox.append(el("p", { class: "hint", text: "After you select Create, you will sign in to the service and allow access." }));
    }
    if (set.gateway) {
      fieldsBox.append(el("p", { class: "hint", text: "This connection goes through an on-premises data gateway." }));
    }
    inputs = set.fields.map((f) => fieldRow(f, gateways));
    for (const item of inputs) fieldsBox.append(item.row);
  }

  if (sets.length > 1) {
    const radios = el("fieldset", { class: "sets" }, el("legend", { text: "How do you want to connect?" }));
    sets.forEach((set, index) => {
      counter += 1;
      const id = `set-${counter}`;
      const radio = el("input", { type: "radio", name: "parameter-set", id, value: set.name, checked: index === 0 });
      radio.addEventListener("change", () => {
        chosen = index;
        drawFields();
      });
      radios.append(el("div", { class: "field check" }, radio, " ", el("label", { for: id, text: set.displayName || set.name })));
    });
    container.append(radios);
  }
  container.append(fieldsBox);
  drawFields();

  return function collect() {
    const parameters = {};
    for (const { input, field } of inputs) {
      if (field.kind === "boolean") parameters[field.name] = input.checked;
      else if (input.value !== "") parameters[field.name] = field.kind === "number" ? Number(input.value) : input.value;
    }
    return { parameterSet: sets[chosen].name, parameters };
  };
}
