"""A thumbnail beside the pointer while it hovers over a point of a Plotly chart (Plotly's hover box holds text only).

A Streamlit component (v2, no build step) that finds the chart by its key and listens to Plotly's hover
events; it draws nothing itself. Points carry their manifest row as the first `custom_data` value.
"""

import streamlit as st

_JS = """
export default function (component) {
  const { data } = component;
  const thumbs = (data && data.thumbs) || {};
  const tip = document.createElement("img");
  tip.dataset.testid = "hoverThumbnail";
  Object.assign(tip.style, {
    position: "fixed", display: "none", zIndex: 10000, pointerEvents: "none", width: "200px",
    border: "1px solid #ccc", borderRadius: "4px", boxShadow: "0 2px 8px rgba(0,0,0,.25)", background: "#fff",
  });
  document.body.appendChild(tip);
  let chart = null, x = 0, y = 0;
  const move = (e) => { x = e.clientX; y = e.clientY; };
  const show = (ev) => {
    const point = ev.points && ev.points[0];
    const row = point && point.customdata ? String(point.customdata[0]) : null;
    if (!row || !thumbs[row]) { tip.style.display = "none"; return; }
    if (ev.event) { x = ev.event.clientX; y = ev.event.clientY; }
    tip.src = thumbs[row];
    tip.dataset.row = row;
    tip.style.left = Math.min(x + 16, window.innerWidth - 216) + "px";
    tip.style.top = Math.min(y + 16, window.innerHeight - 140) + "px";
    tip.style.display = "block";
  };
  const hide = () => { tip.style.display = "none"; };
  const bind = () => {
    const found = document.querySelector(`.st-key-${data.chart} .js-plotly-plot`);
    if (!found || found === chart || typeof found.on !== "function") return;
    chart = found;
    chart.addEventListener("mousemove", move);
    chart.on("plotly_hover", show);
    chart.on("plotly_unhover", hide);
  };
  bind();
  const timer = setInterval(bind, 500);  // the chart is redrawn on reruns
  return () => { clearInterval(timer); tip.remove(); };
}
"""

_component = st.components.v2.component("taxonomy_auditor.hover_thumbnails", js=_JS)


def hover_thumbnails(chart_key: str, thumbs: dict[str, str]) -> None:
    """Show `thumbs[row]` (an image URL, e.g. a data: URL) while hovering the point of that row in chart `chart_key`."""
    _component(data={"chart": chart_key, "thumbs": thumbs}, key=f"{chart_key}_hover", height=0)
