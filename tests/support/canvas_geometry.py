"""Where the real frontend puts a workflow's nodes, groups and links (read from the page by the JS below, in
canvas units, so the same at any zoom), and what overlaps what: test_workflows_browser.py."""
import math

NODES_JS = """
const t = LiteGraph.NODE_TITLE_HEIGHT;
return app.canvas.graph._nodes.map(n => ({id: n.id, type: n.type, title: n.title,
    known: !!LiteGraph.registered_node_types[n.type], errors: !!n.has_errors,
    rect: [n.pos[0], n.pos[1] - t, n.size[0], n.size[1] + t]}));
"""
# title: the band the frontend writes the group's title in (LGraphGroup.titleHeight: font_size * 1.4).
GROUPS_JS = """
return app.canvas.graph._groups.map(g => ({title: g.title, rect: [g.pos[0], g.pos[1], g.size[0], g.size[1]],
    title_rect: [g.pos[0], g.pos[1], g.size[0], g.titleHeight ?? g.font_size * 1.4]}));
"""
# Each link's two ends as the frontend draws them (LGraphNode.getConnectionPos: a widget's input sits at its
# widget); links to a subgraph's own input or output node (no graph node) are left out.
LINKS_JS = """
const g = app.canvas.graph, out = [];
for (const l of (g.links instanceof Map ? g.links.values() : Object.values(g.links))) {
    const a = g.getNodeById(l.origin_id), b = g.getNodeById(l.target_id);
    if (a && b) out.push({name: a.title + " -> " + b.title, start: Array.from(a.getConnectionPos(false, l.origin_slot)),
                          end: Array.from(b.getConnectionPos(true, l.target_slot))});
}
return out;
"""
# The frontend draws a link (links_render_mode SPLINE_LINK, its default) as a cubic Bezier whose control points
# lie a quarter of the ends' distance right of the output and left of the input (LGraphCanvas.renderLinkDirect),
# connections_width 3 px wide.
SPLINE_PULL, LINK_HALF_WIDTH = 0.25, 1.5


def spline(start, end):
    """Points along the link the frontend draws from start (an output) to end (an input), at most 2 px apart."""
    (x0, y0), (x3, y3) = start, end
    pull = SPLINE_PULL * math.dist(start, end)
    xs, ys = (x0, x0 + pull, x3 - pull, x3), (y0, y0, y3, y3)
    # The curve moves at most 3x its longest control leg per unit of t.
    steps = max(1, math.ceil(3 * max(pull, math.dist((x0 + pull, y0), (x3 - pull, y3))) / 2))
    out = []
    for i in range(steps + 1):
        t = i / steps
        w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
        out.append((sum(a * b for a, b in zip(w, xs)), sum(a * b for a, b in zip(w, ys))))
    return out


def links_over_group_titles(links, groups):
    """(link, group) for each link whose drawn line (its width counted) crosses a group's title band: the wire
    is drawn over the title's text."""
    out = []
    for link in links:
        points = spline(link["start"], link["end"])
        for g in groups:
            x, y, w, h = g["title_rect"]
            m = LINK_HALF_WIDTH
            if any(x - m <= px <= x + w + m and y - m <= py <= y + h + m for px, py in points):
                out.append((link["name"], g["title"]))
    return out


def wires_over_titles(driver):
    """links_over_group_titles of the graph the page shows."""
    return links_over_group_titles(driver.execute_script(LINKS_JS), driver.execute_script(GROUPS_JS))


def crossing_group_edges(nodes, groups):
    """(node, group) for each node that lies partly in a group (as drawn: its title bar included), not wholly."""
    out = []
    for n in nodes:
        x, y, w, h = n["rect"]
        for g in groups:
            gx, gy, gw, gh = g["rect"]
            touches = x < gx + gw and gx < x + w and y < gy + gh and gy < y + h
            inside = gx <= x and x + w <= gx + gw and gy <= y and y + h <= gy + gh
            if touches and not inside:
                out.append((n["title"], g["title"]))
    return out


def overlapping(nodes):
    out = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = a["rect"], b["rect"]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                out.append((a["title"], b["title"]))
    return out
