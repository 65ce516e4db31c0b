"""Read the elements of an OpenDSS class in bulk (DSS C-API batches under opendssdirect).

The cold path of a large feeder spends its time in per-element API round trips: make the element
active, ask for its name, buses, node order, Yprim, ratings, and `? class.name.prop` text queries
that the engine parses one by one. `ClassBatch` holds the engine's pointer to every element of a
class (`Batch_CreateByClassS`, in the class's own order) and reads a property of all of them in
one call (`Batch_GetFloat64S`, `Batch_GetAsStringS`); an element's Yprim and node order come from
its pointer directly (`Alt_CE_Get_YPrim`, `Alt_CE_Get_NodeOrder`), without activating it.
"""
from __future__ import annotations

import numpy as np


def _api():
    import opendssdirect as dss  # its engine context's API helpers (the engine opendssdirect drives)

    return dss.Lines._api_util


class ClassBatch:
    """Every element of one OpenDSS class (disabled ones included: see `enabled`)."""

    def __init__(self, cls: str):
        self._api = api = _api()
        self._lib, self._ffi = api.lib, api.ffi
        pp = self._ffi.new("void***")
        cnt = self._ffi.new("int32_t[4]")
        self._lib.Batch_CreateByClassS(pp, cnt, cls.encode())
        self.n = int(cnt[0])
        self._batch = pp[0] if self.n else None
        get_name = self._lib.Obj_GetName
        string = self._ffi.string
        self.names = [string(get_name(self._batch[i])).decode().lower() for i in range(self.n)]

    def __enter__(self) -> ClassBatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._batch is not None:
            self._lib.Batch_Dispose(self._batch)
            self._batch = None

    def floats(self, prop: str) -> np.ndarray:
        if not self.n:
            return np.zeros(0)
        return self._api.get_float64_array(self._lib.Batch_GetFloat64S, self._batch, self.n, prop.encode())

    def ints(self, prop: str) -> np.ndarray:
        """An integer (or enumerated) property as the engine's integer."""
        if not self.n:
            return np.zeros(0, np.int32)
        return self._api.get_int32_array(self._lib.Batch_GetInt32S, self._batch, self.n, prop.encode())

    def strings(self, prop: str) -> list[str]:
        if not self.n:
            return []
        return self._api.get_string_array(self._lib.Batch_GetAsStringS, self._batch, self.n, prop.encode())

    def enabled(self) -> list[bool]:
        return [s.strip().lower().startswith(("y", "t")) for s in self.strings("enabled")]

    def yprims(self, which: list[int]) -> list[list[float]]:
        """Flat Yprim (re, im pairs, column-major as CktElement.YPrim) of elements `which`."""
        return [self._float_list(self._lib.Alt_CE_Get_YPrim, i) for i in which]

    def node_orders(self, which: list[int]) -> list[list[int]]:
        """Node number of every conductor, terminal after terminal (CktElement.NodeOrder)."""
        ffi, lib = self._ffi, self._lib
        out = []
        for i in which:
            ptr = ffi.new("int32_t**")
            cnt = ffi.new("int32_t[4]")
            lib.Alt_CE_Get_NodeOrder(ptr, cnt, self._batch[i])
            out.append(ffi.unpack(ptr[0], cnt[0]))
            lib.DSS_Dispose_PInteger(ptr)
        return out

    def _float_list(self, func, i: int) -> list[float]:
        ffi = self._ffi
        ptr = ffi.new("double**")
        cnt = ffi.new("int32_t[4]")
        func(ptr, cnt, self._batch[i])
        out = ffi.unpack(ptr[0], cnt[0])
        self._lib.DSS_Dispose_PDouble(ptr)
        return out


def class_floats(cls: str, props: tuple[str, ...]) -> dict[str, np.ndarray]:
    """{element name (lower case): [value of each prop]} for every element of class `cls`."""
    with ClassBatch(cls) as batch:
        cols = [batch.floats(p) for p in props]
        table = np.column_stack(cols) if cols and batch.n else np.zeros((batch.n, len(props)))
        return dict(zip(batch.names, table))


def bus_table() -> tuple[list[str], list[float], list[list[int]]]:
    """(bus names, kV base of each bus (line-to-neutral), node numbers of each bus) of the whole
    circuit from the engine's bus pointers (`Alt_Bus_GetListPtr`): the kV bases in one call
    (`Alt_BusBatch_GetFloat64FromFunc`), the nodes per pointer, without activating any bus."""
    import opendssdirect as dss

    api = _api()
    lib, raw, ffi = api.lib, api.lib_unpatched, api.ffi
    names = dss.Circuit.AllBusNames()
    n = len(names)
    if n == 0:
        return [], [], []
    buses = lib.Alt_Bus_GetListPtr()
    kv = api.get_float64_array(lib.Alt_BusBatch_GetFloat64FromFunc, buses, n,
                               ffi.addressof(raw, "Alt_Bus_Get_kVBase")).tolist()
    nodes = []
    for i in range(n):
        ptr = ffi.new("int32_t**")
        cnt = ffi.new("int32_t[4]")
        lib.Alt_Bus_Get_Nodes(ptr, cnt, buses[i])
        nodes.append(ffi.unpack(ptr[0], cnt[0]))
        lib.DSS_Dispose_PInteger(ptr)
    return names, kv, nodes
