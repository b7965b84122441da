#!/usr/bin/env python3
"""Where the wasm's bytes are, without installing twiggy: code bytes per crate
(our crates per module), the largest functions and data segments, each with
its zlib -9 size. Needs a build that kept its names:

    touch Cargo.toml && WASM_OPT_NAMES=1 scripts/build.sh
    python3 bench/wasm-breakdown.py build/index_bg.wasm [top-n]
"""
import collections
import re
import sys
import zlib


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def sections(b):
    i = 8
    while i < len(b):
        sid = b[i]
        size, i = leb(b, i + 1)
        yield sid, b[i : i + size]
        i += size


def imported_functions(body):
    n, j = leb(body, 0)
    count = 0
    for _ in range(n):
        for _ in range(2):  # module and field names
            l, j = leb(body, j)
            j += l
        kind = body[j]
        j += 1
        if kind == 0:  # function: type index
            _, j = leb(body, j)
            count += 1
        elif kind == 1:  # table: reftype, limits
            j += 1
            flags, j = leb(body, j)
            _, j = leb(body, j)
            if flags & 1:
                _, j = leb(body, j)
        elif kind == 2:  # memory: limits
            flags, j = leb(body, j)
            _, j = leb(body, j)
            if flags & 1:
                _, j = leb(body, j)
        elif kind == 3:  # global: valtype, mutability
            j += 2
        elif kind == 4:  # tag: attribute, type index
            j += 1
            _, j = leb(body, j)
    return count


def function_names(body):
    n, j = leb(body, 0)
    if body[j : j + n] != b"name":
        return {}
    j += n
    names = {}
    while j < len(body):
        sub = body[j]
        l, j = leb(body, j + 1)
        if sub == 1:
            k = j
            count, k = leb(body, k)
            for _ in range(count):
                idx, k = leb(body, k)
                nl, k = leb(body, k)
                names[idx] = body[k : k + nl].decode("utf8", "replace")
                k += nl
        j += l
    return names


CRATES = r"(lightning_fallback_gateway|lightning_fallback_backends|lightning_fallback)::(\w+)|([a-z_0-9]+)(?:\[[0-9a-f]+\])?::"


def owner(name):
    m = re.search(CRATES, name)
    if not m:
        return "(other)"
    if m.group(1):
        return f"{m.group(1)}::{m.group(2)}"
    return m.group(3)


def main():
    wasm = open(sys.argv[1], "rb").read()
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    imports, code, data, names = 0, b"", [], {}
    for sid, body in sections(wasm):
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            code = body
        elif sid == 11:
            n, j = leb(body, 0)
            for _ in range(n):
                flags, j = leb(body, j)
                if flags == 2:
                    _, j = leb(body, j)
                if flags != 1:
                    while body[j] != 0x0B:  # the offset expression
                        j += 1
                    j += 1
                l, j = leb(body, j)
                data.append(body[j : j + l])
                j += l
        elif sid == 0:
            names.update(function_names(body))
    if not names:
        sys.exit("no names section: build with WASM_OPT_NAMES=1 (see the docstring)")
    n, j = leb(code, 0)
    fns = []
    for f in range(n):
        l, j = leb(code, j)
        fns.append((names.get(imports + f, f"func{imports + f}"), code[j : j + l]))
        j += l
    z = lambda b: len(zlib.compress(b, 9))
    print(f"code {len(code):,} bytes ({z(code):,} zlib), data {sum(map(len, data)):,} bytes "
          f"({z(b''.join(data)):,} zlib), {len(fns)} functions")
    by = collections.defaultdict(list)
    for name, body in fns:
        by[owner(name)].append(body)
    print(f"\n| code bytes | zlib alone | functions | crate or module |\n|---:|---:|---:|---|")
    for k, bodies in sorted(by.items(), key=lambda kv: -sum(map(len, kv[1])))[:top]:
        print(f"| {sum(map(len, bodies)):,} | {z(b''.join(bodies)):,} | {len(bodies)} | `{k}` |")
    print(f"\n| bytes | function |\n|---:|---|")
    for name, body in sorted(fns, key=lambda f: -len(f[1]))[:top]:
        print(f"| {len(body):,} | `{re.sub(r'::h[0-9a-f]{16}$', '', name)[:110]}` |")
    print(f"\n| bytes | zlib | data segment starts with |\n|---:|---:|---|")
    for seg in sorted(data, key=len, reverse=True)[:8]:
        text = re.sub(rb"[^ -~]", b".", seg[:60]).decode()
        print(f"| {len(seg):,} | {z(seg):,} | `{text}` |")


main()
