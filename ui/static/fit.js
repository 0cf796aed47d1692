/* Sizes the chart and the text box to the window, so that on a laptop or a projector the
   actions, the chart and the newest tokens are on one screen without scrolling.

   The text box follows its newest token (text.js), so the newest tokens are at its bottom:
   that bottom must be inside the window. The chart takes the height that leaves the text box
   TEXT_MIN pixels below it; on phones (one column) the chart keeps a fixed height and Generate
   scrolls the text into view instead (app.js). Heights are measured with the page scrolled
   to its top, as it is when a class opens it. */
(function (global) {
  "use strict";
  const NARROW = 860; // playground.css's one-column width
  const CHART = { min: 200, max: 400, phone: 300 };
  const TEXT = { min: 96, max: 320 };
  const TEXT_MIN = 150; // the text box, its legend and the gaps below the chart

  const pageTop = (el) => el.getBoundingClientRect().top + global.scrollY;
  const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, Math.round(x)));
  const narrow = () => global.innerWidth <= NARROW;

  /* plot: the main chart's div; textBox: the text; legend: the line under it. */
  function create(plot, textBox, legend) {
    let chart = null;
    // The numbers above the chart change height from step to step (a line wraps or not); a
    // change under SLACK pixels keeps the chart's height, so it does not twitch as a slider moves.
    const SLACK = 12;
    function chartHeight() {
      if (narrow()) return CHART.phone;
      const want = clamp(global.innerHeight - pageTop(plot) - TEXT_MIN, CHART.min, CHART.max);
      if (chart === null || Math.abs(want - chart) > SLACK) chart = want;
      return chart;
    }
    function fitText() {
      if (narrow()) { textBox.style.maxHeight = ""; return; }
      const room = global.innerHeight - pageTop(textBox) - legend.offsetHeight - 14;
      const following = textBox.scrollHeight - textBox.scrollTop - textBox.clientHeight < 24;
      textBox.style.maxHeight = clamp(room, TEXT.min, TEXT.max) + "px";
      if (following) textBox.scrollTop = textBox.scrollHeight;
    }
    function resized() { chart = null; }
    return { chartHeight, fitText, resized, narrow };
  }

  global.DPFit = { create };
})(window);
