"""``list(start_after=)`` across folder levels, the way the promoter lists metrics windows:
``{model}/metrics/{version}/{window}/{server}-{seq}.json`` from the prefix plus a window.
"""

from __future__ import annotations

import concurrent.futures as cf

from modelshelf._stores import Store


def test_start_after_a_window_lists_that_window_and_later_ones(store: Store) -> None:
    prefix = "m/metrics/1.1.0/"
    windows = [f"20261201T{h:02d}{m:02d}00Z" for h in range(20, 23) for m in range(0, 60, 7)]
    keys = [f"{prefix}{w}/web-{s}-{q:08d}.json" for w in windows for s in (1, 2) for q in (0, 9)]
    # Neighbours that sort close to the listed ones and must never appear.
    others = ["m/metrics/1.1.0-rc/20261201T210000Z/web-1-00000000.json", "m/metrics/1.0.0/x"]
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: store.put(k, b"{}"), keys + others))
    listed = [i.key for i in store.list(prefix)]
    assert listed == sorted(keys, key=str.encode), "the whole prefix, in key order"
    for i in (0, 5, len(windows) - 1):
        after = [i.key for i in store.list(prefix, start_after=prefix + windows[i])]
        expected = [k for k in keys if k.split("/")[3] >= windows[i]]
        assert after == expected, f"start_after {windows[i]!r} listed {after[:3]}..."
    past = prefix + "20261201T230000Z"
    assert list(store.list(prefix, start_after=past)) == [], "nothing after the last window"
    inside = f"{prefix}{windows[3]}/web-1-00000009.json"
    got = [i.key for i in store.list(prefix, start_after=inside)]
    assert got == keys[keys.index(inside) + 1 :], "start_after a key inside a window folder"
