"""The metrics page's monthly column charts, pure: well-formed SVG with escaped text, a
title and a description with every value, and columns where the values put them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from markupsafe import Markup
from regulars_loyalty.entrypoints.console.charts import Point, column_chart

SVG = "{http://www.w3.org/2000/svg}"

# the plot: 640 x 240, 44 left, 8 right, 12 top, 40 bottom: 588 wide, 188 high


def parsed(chart: Markup) -> ET.Element:
    # the chart is inline SVG; as XML it must parse (every label and title escaped)
    return ET.fromstring(str(chart).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def rects(chart: Markup) -> list[dict[str, str]]:
    return [dict(r.attrib) for r in parsed(chart).iter(f"{SVG}rect")]


def test_a_chart_is_markup_with_a_title_and_a_description_of_every_value() -> None:
    points = [Point("Jan 26", 12.0), Point("Feb 26", None), Point("Mar 26", -40.25)]
    chart = column_chart("nps", "NPS", points, low=-100, high=100, unit="")
    assert isinstance(chart, Markup)
    svg = parsed(chart)
    assert svg.attrib["aria-labelledby"] == "chart-nps-title chart-nps-desc"
    assert svg.attrib["role"] == "img"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert (title.attrib["id"], title.text) == ("chart-nps-title", "NPS by month")
    assert (desc.attrib["id"], desc.text) == (
        "chart-nps-desc",
        "Jan 26: 12.0; Feb 26: nothing to count; Mar 26: -40.2",
    )


def test_a_month_with_nothing_to_count_has_no_column() -> None:
    points = [Point("Jan 26", 50.0), Point("Feb 26", None), Point("Mar 26", 0.0)]
    chart = column_chart("csat", "CSAT", points, low=0, high=100, unit="%")
    columns = list(parsed(chart).iter(f"{SVG}rect"))
    assert [c.findtext(f"{SVG}title") for c in columns] == ["Jan 26: 50.0%", "Mar 26: 0.0%"]


def test_no_months_says_so() -> None:
    chart = column_chart("csat", "CSAT", [], low=0, high=100, unit="%")
    assert parsed(chart).findtext(f"{SVG}desc") == "no months in the range"
    assert rects(chart) == []


def test_labels_titles_and_units_are_escaped() -> None:
    points = [Point("<script>alert(1)</script>", 5.0), Point('Q&A "x"', None)]
    chart = column_chart("nps", "<b>NPS</b>", points, low=-100, high=100, unit="<i>pts</i>")
    text = str(chart)
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    svg = parsed(chart)
    assert svg.findtext(f"{SVG}title") == "<b>NPS</b> by month"
    assert svg.findtext(f"{SVG}desc") == (
        '<script>alert(1)</script>: 5.0<i>pts</i>; Q&A "x": nothing to count'
    )
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("text-anchor") == "middle"]
    assert labels == ["<script>alert(1)</script>", 'Q&A "x"']
    column = next(svg.iter(f"{SVG}rect"))
    assert column.findtext(f"{SVG}title") == "<script>alert(1)</script>: 5.0<i>pts</i>"


def test_a_positive_value_grows_up_from_zero_and_a_negative_one_down() -> None:
    points = [Point("Jan 26", 50.0), Point("Feb 26", -50.0)]
    chart = column_chart("nps", "NPS", points, low=-100, high=100, unit="")
    # zero is the middle of the plot: 12 + 188 / 2 = 106; 50 points are 47 high
    up, down = rects(chart)
    assert (up["y"], up["height"], up["class"]) == ("59.0", "47.0", "bar")
    assert (down["y"], down["height"], down["class"]) == ("106.0", "47.0", "bar below")
    # two slots of 294, columns 0.6 of a slot, centred in it
    assert (up["x"], up["width"]) == ("102.8", "176.4")
    assert (down["x"], down["width"]) == ("396.8", "176.4")
    axis = [ln.attrib for ln in parsed(chart).iter(f"{SVG}line") if ln.attrib["class"] == "axis"]
    assert [(a["y1"], a["y2"]) for a in axis] == [("106.0", "106.0")]


def test_on_a_scale_from_zero_columns_stand_on_the_bottom() -> None:
    chart = column_chart("csat", "CSAT", [Point("Jan 26", 25.0)], low=0, high=100, unit="%")
    (column,) = rects(chart)
    assert (column["y"], column["height"]) == ("153.0", "47.0")  # 200 - 188 / 4
    assert (column["x"], column["width"]) == ("161.6", "352.8")


def test_a_value_outside_the_scale_is_drawn_at_its_edge_and_described_as_it_is() -> None:
    points = [Point("Jan 26", 130.0), Point("Feb 26", -20.0)]
    chart = column_chart("csat", "CSAT", points, low=0, high=100, unit="%")
    high, low = rects(chart)
    assert (high["y"], high["height"]) == ("12.0", "188.0")
    assert low["height"] == "1.0"  # a zero-height column is still a visible line
    assert parsed(chart).findtext(f"{SVG}desc") == "Jan 26: 130.0%; Feb 26: -20.0%"


def test_a_value_of_zero_is_a_hairline_on_the_zero_line() -> None:
    chart = column_chart("nps", "NPS", [Point("Jan 26", 0.0)], low=-100, high=100, unit="")
    (column,) = rects(chart)
    assert (column["y"], column["height"], column["class"]) == ("106.0", "1.0", "bar")


def test_five_grid_lines_with_their_values() -> None:
    chart = column_chart("nps", "NPS", [Point("Jan 26", 1.0)], low=-100, high=100, unit="")
    svg = parsed(chart)
    grid = [ln.attrib["y1"] for ln in svg.iter(f"{SVG}line") if ln.attrib["class"] == "grid"]
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("text-anchor") == "end"]
    assert grid == ["200.0", "153.0", "106.0", "59.0", "12.0"]
    assert ticks == ["-100", "-50", "0", "50", "100"]


def test_a_long_range_labels_every_other_month_and_describes_all_of_them() -> None:
    points = [Point(f"M{i:02d}", float(i)) for i in range(12)]
    chart = column_chart("csat", "CSAT", points, low=0, high=100, unit="%")
    svg = parsed(chart)
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.attrib.get("text-anchor") == "middle"]
    assert labels == ["M00", "M02", "M04", "M06", "M08", "M10"]
    assert len(rects(chart)) == 12
    desc = svg.findtext(f"{SVG}desc") or ""
    assert re.findall(r"M\d\d", desc) == [f"M{i:02d}" for i in range(12)]
