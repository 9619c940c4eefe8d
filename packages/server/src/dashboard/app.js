// The dashboard's script: polls /v1/admin/stats once a second and draws one uPlot chart
// per policy. An admin token, when the server needs one, is read from the page address
// (#token=...), so it is never sent to the server in a URL.
;(() => {
  const token = new URLSearchParams(location.hash.slice(1)).get("token")
  const headers = token ? { authorization: `Bearer ${token}` } : {}
  const state = { charts: {}, stats: undefined, polls: 0 }
  window.tollgate = state

  const $ = (id) => document.getElementById(id)
  const text = (el, value) => {
    el.textContent = value
  }

  function chartFor(name, width) {
    let chart = state.charts[name]
    if (chart) return chart
    const box = document.createElement("div")
    box.className = "chart"
    box.dataset.policy = name
    const title = document.createElement("h3")
    title.textContent = name
    const totals = document.createElement("span")
    totals.className = "totals"
    title.append(totals)
    box.append(title)
    const charts = $("charts")
    if (charts.querySelector(".empty")) charts.textContent = ""
    charts.append(box)
    chart = new uPlot(
      {
        width,
        height: 180,
        scales: { x: { time: true } },
        axes: [{}, { label: "per second", size: 56 }],
        series: [
          {},
          { label: "allowed", stroke: "#12805c", fill: "rgba(18,128,92,0.12)", width: 2 },
          { label: "denied", stroke: "#c4320a", fill: "rgba(196,50,10,0.12)", width: 2 },
        ],
      },
      [[], [], []],
      box,
    )
    chart.totals = totals
    state.charts[name] = chart
    return chart
  }

  function render(stats) {
    text($("version"), stats.config.version)
    const store = $("store")
    text(
      store,
      `${stats.store.kind} · ${stats.store.healthy ? "healthy" : `down (${stats.store.error ?? "no answer"})`}`,
    )
    store.className = stats.store.healthy ? "up" : "down"
    text($("uptime"), `${Math.floor(stats.uptimeSeconds)} s`)
    const width = Math.max(320, $("charts").clientWidth - 8)
    for (const [name, s] of Object.entries(stats.series.policies)) {
      const chart = chartFor(name, width)
      chart.setData([stats.series.seconds, s.allowed, s.denied])
      const sum = (a) => a.reduce((x, y) => x + y, 0)
      chart.totals.textContent = `${sum(s.allowed)} allowed, ${sum(s.denied)} denied in the last minute`
    }
    const rows = stats.topDenied.map((k) => {
      const tr = document.createElement("tr")
      for (const [value, cls] of [
        [k.policy, ""],
        [k.key, "key"],
        [String(k.denied), "n"],
      ]) {
        const td = document.createElement("td")
        td.textContent = value
        if (cls) td.className = cls
        tr.append(td)
      }
      return tr
    })
    const top = $("top")
    top.textContent = ""
    if (rows.length === 0) {
      const tr = document.createElement("tr")
      tr.innerHTML = '<td colspan="3" class="empty">none</td>'
      rows.push(tr)
    }
    top.append(...rows)
  }

  async function poll() {
    try {
      const res = await fetch("/v1/admin/stats", { headers })
      if (!res.ok) {
        const body = await res.json().catch(() => ({}))
        throw new Error(body.error?.message ?? `HTTP ${res.status}`)
      }
      state.stats = await res.json()
      render(state.stats)
      $("error").hidden = true
    } catch (error) {
      $("error").hidden = false
      text($("error"), `Cannot load stats: ${error.message}`)
    } finally {
      state.polls++
      setTimeout(poll, 1000)
    }
  }
  poll()
})()
