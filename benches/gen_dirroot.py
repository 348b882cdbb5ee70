#!/usr/bin/env python3
"""Generate, or advance by one night, a synthetic Alfresco-style ``dir.root``.

Used by benches/compare.sh to benchmark coffer against restic and Borg on data
shaped like a real Alfresco backup source:

  DIR/contentstore/YYYY/M/D/H/m/<uuid>.bin   binary content store (no zero padding,
                                             exactly as Alfresco's FileContentStore)
  DIR/db/alfresco.sql                        plain-SQL pg_dump of the repository DB
  DIR/solr4Backup/alfresco/snapshot.<ts>/    Solr index backup (with --solr)
  DIR/.gen-state.json                        generator state, so `night` can continue

Usage:
  gen_dirroot.py init  DIR --seed N --docs N --dump-mb N [--solr]
  gen_dirroot.py night DIR [--seed N] [--new N] [--versions N] [--dups N] [--touch N]

Everything is deterministic: the same seed and the same sequence of commands
produce byte-identical trees (file mtimes included), so runs can be compared.
Only the Python 3.11 standard library is used.
"""
from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
import zlib

KiB = 1024
MiB = 1024 * KiB

STATE_FILE = ".gen-state.json"
DUMP_REL = os.path.join("db", "alfresco.sql")
SOLR_REL = os.path.join("solr4Backup", "alfresco")
# "Today" for a fresh init; the contentstore history ends here and each night adds a day.
BASE_DAY = dt.date(2024, 1, 15)
HISTORY_DAYS = 365
# Write random content in pieces of this size so a 50 MiB file never needs 50 MiB of
# Python ints (random.randbytes builds one big int internally).
WRITE_PIECE = 4 * MiB
# Text content is cut from a pool of generated prose; see text_bytes() for why.
TEXT_POOL_BYTES = 8 * MiB

# (id, mimetype, is_binary, magic header, weight within its kind). The header only
# makes `file(1)` happy; the body is what matters for compression and dedup.
MIMETYPES = [
    (1, "application/pdf", True, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 50),
    (2, "image/jpeg", True, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00", 25),
    (3, "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     True, b"PK\x03\x04\x14\x00\x06\x00\x08\x00", 15),
    (4, "image/png", True, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 10),
    (5, "text/plain", False, b"", 50),
    (6, "text/html", False, b"<!DOCTYPE html>\n<html><body>\n", 25),
    (7, "text/xml", False, b'<?xml version="1.0" encoding="UTF-8"?>\n<document>\n', 15),
    (8, "text/csv", False, b"", 10),
]
MIME = {m[0]: m for m in MIMETYPES}
EXT = {1: "pdf", 2: "jpg", 3: "docx", 4: "png", 5: "txt", 6: "html", 7: "xml", 8: "csv"}
BINARY_SHARE = 0.6  # ~60% incompressible (PDF/JPEG/Office zips), ~40% text-like

# Alfresco ids that appear in rows. Values are arbitrary but stable.
STORE_SPACES, STORE_VERSION2 = 6, 4
T_CONTENT, T_FOLDER, T_PERSON, T_VERSION = 51, 31, 44, 93
T_OTHER = [101, 102, 103, 104, 105, 106]  # act:action, cm:rating, fm:post, dl:*, cm:link ...
Q_NAME, Q_TITLE, Q_DESC, Q_AUTHOR, Q_CONTENT = 25, 27, 28, 33, 51
Q_VERSION_LABEL, Q_AUTO_VERSION, Q_INITIAL_VERSION, Q_THUMB_MOD = 60, 61, 62, 70
Q_PERSON = [200, 201, 202, 203, 204, 205]  # userName, firstName, lastName, email, org, job
Q_MISC = list(range(80, 120))

# Table definitions in pg_dump order (alphabetical). Column names match Alfresco's schema.
TABLES = {
    "alf_child_assoc": [
        ("id", "bigint NOT NULL"), ("version", "bigint NOT NULL"),
        ("parent_node_id", "bigint NOT NULL"), ("type_qname_id", "bigint NOT NULL"),
        ("child_node_name_crc", "bigint NOT NULL"),
        ("child_node_name", "character varying(50) NOT NULL"),
        ("child_node_id", "bigint NOT NULL"), ("qname_ns_id", "bigint NOT NULL"),
        ("qname_localname", "character varying(255) NOT NULL"),
        ("qname_crc", "bigint NOT NULL"), ("is_primary", "boolean"),
        ("assoc_index", "integer")],
    "alf_content_data": [
        ("id", "bigint NOT NULL"), ("version", "bigint NOT NULL"),
        ("content_url_id", "bigint"), ("content_mimetype_id", "bigint"),
        ("content_encoding_id", "bigint"), ("content_locale_id", "bigint")],
    "alf_content_url": [
        ("id", "bigint NOT NULL"), ("content_url", "character varying(255) NOT NULL"),
        ("content_url_short", "character varying(12) NOT NULL"),
        ("content_url_crc", "bigint NOT NULL"), ("content_size", "bigint NOT NULL"),
        ("orphan_time", "bigint")],
    "alf_mimetype": [
        ("id", "bigint NOT NULL"), ("version", "bigint NOT NULL"),
        ("mimetype_str", "character varying(100) NOT NULL")],
    "alf_node": [
        ("id", "bigint NOT NULL"), ("version", "bigint NOT NULL"),
        ("store_id", "bigint NOT NULL"), ("uuid", "character varying(36) NOT NULL"),
        ("transaction_id", "bigint NOT NULL"), ("type_qname_id", "bigint NOT NULL"),
        ("locale_id", "bigint NOT NULL"), ("acl_id", "bigint"),
        ("audit_creator", "character varying(255)"),
        ("audit_created", "character varying(30)"),
        ("audit_modifier", "character varying(255)"),
        ("audit_modified", "character varying(30)"),
        ("audit_accessed", "character varying(30)")],
    "alf_node_properties": [
        ("node_id", "bigint NOT NULL"), ("actual_type_n", "integer NOT NULL"),
        ("persisted_type_n", "integer NOT NULL"), ("boolean_value", "boolean"),
        ("long_value", "bigint"), ("float_value", "real"),
        ("double_value", "double precision"),
        ("string_value", "character varying(1024)"), ("serializable_value", "bytea"),
        ("qname_id", "bigint NOT NULL"), ("list_index", "integer NOT NULL"),
        ("locale_id", "bigint NOT NULL")],
    "alf_transaction": [
        ("id", "bigint NOT NULL"), ("version", "bigint NOT NULL"),
        ("change_txn_id", "character varying(56) NOT NULL"),
        ("commit_time_ms", "bigint")],
}
# Tables with an id sequence (all but alf_node_properties, keyed by node_id+qname).
SEQ_TABLES = [t for t in TABLES if t != "alf_node_properties"]


# ----------------------------------------------------------------------------- helpers

def die(msg: str) -> None:
    print(f"gen_dirroot.py: {msg}", file=sys.stderr)
    sys.exit(2)


def uuid_for(seed: int, n: int) -> str:
    """uuid4-format id derived from (seed, counter), not from a shared RNG stream, so
    adding a feature that draws more random numbers does not rename every file."""
    h = hashlib.blake2b(f"{seed}:uuid:{n}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=h, version=4))


def day_start(day: dt.date) -> int:
    return calendar.timegm(day.timetuple())


def iso_ms(ts: float) -> str:
    """Alfresco stores audit dates as ISO-8601 strings with milliseconds."""
    ms = int(ts * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


def store_path(ts: float) -> str:
    """Alfresco's FileContentStore layout: year/month/day/hour/minute, no zero padding."""
    t = time.gmtime(ts)
    return f"{t.tm_year}/{t.tm_mon}/{t.tm_mday}/{t.tm_hour}/{t.tm_min}"


# Size bands: (cumulative probability, low, high); log-uniform inside a band.
SIZE_BANDS = [
    (0.06, 1 * KiB, 10 * KiB),      # thumbnails, tiny text
    (0.90, 10 * KiB, 500 * KiB),    # the bulk: letters, forms, small PDFs
    (0.995, 1 * MiB, 20 * MiB),     # scans, presentations
    (1.0, 20 * MiB, 50 * MiB),      # the odd video or huge scan
]


def size_at(u: float) -> int:
    """Inverse CDF of the skewed document size distribution (mean ~0.87 MiB)."""
    p0 = 0.0
    for p1, lo, hi in SIZE_BANDS:
        if u < p1 or p1 == 1.0:
            f = min(1.0, (u - p0) / (p1 - p0))
            return int(math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo))))
        p0 = p1
    raise AssertionError


def doc_sizes(r: random.Random, n: int) -> list[int]:
    """n sizes by stratified sampling: one draw per 1/n quantile slice, shuffled.
    Same distribution as i.i.d. draws, but the heavy tail no longer makes the total
    swing wildly, so --docs controls the corpus size and nights stay at 2-5%."""
    sizes = [size_at((i + r.random()) / n) for i in range(n)]
    r.shuffle(sizes)
    return sizes


def pick_mime(r: random.Random, binary: bool | None = None) -> int:
    if binary is None:
        binary = r.random() < BINARY_SHARE
    cands = [m for m in MIMETYPES if m[2] == binary]
    return r.choices([m[0] for m in cands], weights=[m[4] for m in cands])[0]


def make_vocab(seed: int) -> tuple[list[str], list[float]]:
    """Pseudo-words from syllables with Zipf weights: compresses like natural language
    (roughly 3x with zstd) without shipping a dictionary."""
    r = random.Random(f"{seed}:vocab")
    syl = ["an", "ber", "co", "de", "el", "fa", "gen", "hu", "in", "jo", "ka", "lo",
           "men", "nor", "o", "pra", "qui", "ro", "sa", "ter", "u", "ver", "wa", "xi",
           "yo", "zen", "the", "and", "ment", "tion", "ing", "er", "st", "pl", "tr", "is"]
    vocab: set[str] = set()
    while len(vocab) < 4000:
        vocab.add("".join(r.choices(syl, k=r.choice([1, 1, 2, 2, 2, 3, 3, 4]))))
    words = sorted(vocab)
    r.shuffle(words)
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(words))))
    return words, cum


_POOL: bytes | None = None


def text_pool(seed: int) -> bytes:
    """TEXT_POOL_BYTES of prose (sentences, paragraphs) built once per process."""
    global _POOL
    if _POOL is None:
        words, cum = make_vocab(seed)
        r = random.Random(f"{seed}:textpool")
        out, n = [], 0
        while n < TEXT_POOL_BYTES:
            ws = r.choices(words, cum_weights=cum, k=4000)
            i = 0
            while i < len(ws):
                k = r.randint(6, 22)
                s = " ".join(ws[i:i + k]).capitalize()
                if r.random() < 0.08:
                    s += f" {r.randint(1, 99999)}"
                s += ".\n\n" if r.random() < 0.15 else ". "
                out.append(s)
                n += len(s)
                i += k
        _POOL = "".join(out).encode("ascii")[:TEXT_POOL_BYTES]
    return _POOL


def text_bytes(r: random.Random, pool: bytes, size: int) -> bytes:
    """Text-like content: concatenation of short slices (64..2111 bytes) of the pool at
    random offsets. Generating words one by one is far too slow for ~1 GB; slicing is
    fast and still compresses like prose. Slices are much shorter than any sane CDC
    minimum chunk (coffer: 128 KiB, restic: 512 KiB), so chunks of different documents
    never coincide and text does not dedup unrealistically."""
    out, n, top = [], 0, len(pool) - 2200
    randrange, bits = r.randrange, r.getrandbits
    while n < size:
        off = randrange(top)
        ln = 64 + bits(11)
        out.append(pool[off:off + ln])
        n += ln
    return b"".join(out)[:size]


def write_random(f, r: random.Random, n: int) -> None:
    while n > 0:
        k = min(n, WRITE_PIECE)
        f.write(r.randbytes(k))
        n -= k


def set_mtime(path: str, ts: float) -> None:
    os.utime(path, (ts, ts))


# ----------------------------------------------------------------------------- the DB

class Db:
    """Rows of the dumped tables, in heap (= dump) order, one str per row with '\\n'.

    PostgreSQL's COPY in pg_dump emits rows in physical order: inserts land at the
    end, and an UPDATE writes a new tuple elsewhere (here: at the end). That is why an
    updated row is removed from its place and appended, which is also what a real
    nightly dump diff looks like: mostly identical, a few holes, a growing tail."""

    def __init__(self, seed: int, counters: dict, rows: dict[str, list[str]] | None = None):
        self.seed = seed
        self.c = counters
        self.rows = rows if rows is not None else {t: [] for t in TABLES}
        self.size = sum(len(x) for t in self.rows.values() for x in t)
        self.words, self.cum = make_vocab(seed)
        r = random.Random(f"{seed}:users")
        self.users = ["admin", "System"] + [
            f"{a}.{b}" for a, b in zip(r.choices(self.words[:300], k=60),
                                        r.choices(self.words[:600], k=60))]
        self.txn = 0
        if not self.rows["alf_mimetype"]:
            for mid, mt, *_ in MIMETYPES:
                self._add("alf_mimetype", f"{mid}\t0\t{mt}\n")
            self.c["alf_mimetype"] = len(MIMETYPES) + 1

    # -- low level
    def _add(self, table: str, row: str) -> None:
        self.rows[table].append(row)
        self.size += len(row)

    def next_id(self, table: str) -> int:
        v = self.c[table]
        self.c[table] = v + 1
        return v

    def next_uuid(self) -> str:
        n = self.c["uuid"]
        self.c["uuid"] = n + 1
        return uuid_for(self.seed, n)

    def phrase(self, r: random.Random, lo: int, hi: int) -> str:
        return " ".join(r.choices(self.words, cum_weights=self.cum, k=r.randint(lo, hi)))

    # -- row builders
    def new_txn(self, ts: float) -> int:
        tid = self.next_id("alf_transaction")
        self._add("alf_transaction", f"{tid}\t1\t{self.next_uuid()}\t{int(ts * 1000)}\n")
        self.txn = tid
        return tid

    def node(self, r, ts: float, type_q: int, store: int = STORE_SPACES) -> int:
        nid = self.next_id("alf_node")
        creator = r.choice(self.users)
        created = iso_ms(ts)
        self._add("alf_node",
                  f"{nid}\t1\t{store}\t{self.next_uuid()}\t{self.txn}\t{type_q}\t1\t"
                  f"{r.randint(1, 400)}\t{creator}\t{created}\t{creator}\t{created}\t\\N\n")
        return nid

    def prop_str(self, nid: int, q: int, s: str) -> None:
        self._add("alf_node_properties", f"{nid}\t6\t6\tf\t0\t0\t0\t{s}\t\\N\t{q}\t-1\t1\n")

    def prop_long(self, nid: int, q: int, v: int, actual: int = 3) -> None:
        self._add("alf_node_properties",
                  f"{nid}\t{actual}\t3\tf\t{v}\t0\t0\t\\N\t\\N\t{q}\t-1\t1\n")

    def prop_bool(self, nid: int, q: int, v: bool) -> None:
        self._add("alf_node_properties",
                  f"{nid}\t1\t1\t{'t' if v else 'f'}\t0\t0\t0\t\\N\t\\N\t{q}\t-1\t1\n")

    def assoc(self, parent: int, child: int, name: str) -> None:
        aid = self.next_id("alf_child_assoc")
        name = name[:50]
        crc = zlib.crc32(name.lower().encode())
        local = name.lower().replace(" ", "_x0020_")[:255]
        qcrc = zlib.crc32(("{http://www.alfresco.org/model/content/1.0}" + local).encode())
        self._add("alf_child_assoc",
                  f"{aid}\t1\t{parent}\t34\t{crc}\t{name}\t{child}\t6\t{local}\t{qcrc}\tt\t-1\n")

    def content_url(self, rel: str, size: int) -> int:
        """rel is 'YYYY/M/D/H/m/<uuid>.bin'. Short form and CRC as Alfresco computes them
        (last 12 chars and CRC32 of the lower-cased URL)."""
        cid = self.next_id("alf_content_url")
        url = "store://" + rel
        self._add("alf_content_url",
                  f"{cid}\t{url}\t{url[-12:].lower()}\t{zlib.crc32(url.lower().encode())}"
                  f"\t{size}\t\\N\n")
        return cid

    def content_data(self, cu: int, mime: int) -> int:
        did = self.next_id("alf_content_data")
        self._add("alf_content_data", f"{did}\t1\t{cu}\t{mime}\t1\t1\n")
        return did

    # -- composite objects
    def doc_node(self, r, ts: float, parent: int, cd: int, mime: int, name: str | None = None) -> int:
        self.new_txn(ts)
        nid = self.node(r, ts, T_CONTENT)
        title = self.phrase(r, 2, 7)
        name = name or f"{title.replace(' ', '-')[:40]}.{EXT[mime]}"
        self.prop_str(nid, Q_NAME, name)
        self.prop_str(nid, Q_TITLE, title.capitalize())
        if r.random() < 0.6:
            self.prop_str(nid, Q_DESC, self.phrase(r, 6, 25).capitalize())
        self.prop_long(nid, Q_CONTENT, cd, actual=21)
        self.prop_str(nid, Q_VERSION_LABEL, "1.0")
        self.prop_bool(nid, Q_AUTO_VERSION, True)
        self.prop_bool(nid, Q_INITIAL_VERSION, True)
        if r.random() < 0.5:
            self.prop_str(nid, Q_AUTHOR, r.choice(self.users))
        if r.random() < 0.4:
            self.prop_str(nid, Q_THUMB_MOD, f"doclib:{int(ts * 1000) + r.randint(500, 9000)}")
        self.assoc(parent, nid, name)
        return nid

    def folder_node(self, r, ts: float, parent: int) -> int:
        nid = self.node(r, ts, T_FOLDER)
        name = self.phrase(r, 1, 4).title()
        self.prop_str(nid, Q_NAME, name)
        self.prop_str(nid, Q_TITLE, name)
        if r.random() < 0.5:
            self.prop_str(nid, Q_DESC, self.phrase(r, 5, 20).capitalize())
        self.assoc(parent, nid, name)
        return nid

    def filler_node(self, r, ts: float, folders: list[int]) -> None:
        """Non-content nodes (folders, people, actions, ratings, posts...) that make up
        most of a real Alfresco database and hence most of the dump."""
        if self.c["alf_node"] % 8 == 0 or self.txn == 0:
            self.new_txn(ts)
        x = r.random()
        parent = r.choice(folders)
        if x < 0.08:
            folders.append(self.folder_node(r, ts, parent))
            return
        if x < 0.1:
            nid = self.node(r, ts, T_PERSON)
            first, last = r.choice(self.words[:500]), r.choice(self.words[:2000])
            name = f"{first}.{last}"
            for q, v in zip(Q_PERSON, [name, first.title(), last.title(),
                                       f"{name}@example.org", self.phrase(r, 1, 3).title(),
                                       self.phrase(r, 1, 3)]):
                self.prop_str(nid, q, v)
            self.prop_long(nid, Q_MISC[0], r.randint(0, 10 ** 10))
        else:
            nid = self.node(r, ts, r.choice(T_OTHER))
            name = f"{self.phrase(r, 1, 3).replace(' ', '-')}-{r.randint(1, 10 ** 6)}"
            self.prop_str(nid, Q_NAME, name)
            if r.random() < 0.5:
                self.prop_str(nid, Q_TITLE, self.phrase(r, 2, 6))
            for q in r.sample(Q_MISC[1:], r.randint(1, 4)):
                k = r.random()
                if k < 0.4:
                    self.prop_long(nid, q, r.randint(0, 2 ** 40))
                elif k < 0.7:
                    self.prop_bool(nid, q, r.random() < 0.5)
                else:
                    self.prop_str(nid, q, self.phrase(r, 1, 8))
        self.assoc(parent, nid, name)

    # -- updates (night)
    def take(self, table: str, ids: set[str], match=None) -> dict[str, list[str]]:
        """Remove rows whose first column is in ids (and match(fields) if given) and
        return them by id. One pass over the table; the rest keeps its order."""
        if not ids:
            return {}
        found: dict[str, list[str]] = {}
        kept = []
        for line in self.rows[table]:
            k = line[:line.index("\t")]
            if k in ids and (match is None or match(line.split("\t"))):
                found.setdefault(k, []).append(line)
                self.size -= len(line)
            else:
                kept.append(line)
        self.rows[table] = kept
        return found


# ----------------------------------------------------------------------------- dump I/O

def render_dump(path: str, db: Db, started: float) -> None:
    """Write a pg_dump-like plain SQL file. Only the data sections vary between
    nights; DDL is constant, so unchanged tables stay byte-identical."""
    ts = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    nrows = sum(len(v) for v in db.rows.values())
    completed = started + 3 + nrows // 20000  # pg_dump takes a while; deterministic
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n", buffering=4 * MiB) as f:
        w = f.write
        w("--\n-- PostgreSQL database dump\n--\n\n"
          "-- Dumped from database version 13.13\n-- Dumped by pg_dump version 13.13\n\n"
          f"-- Started on {ts(started)}\n\n"
          "SET statement_timeout = 0;\nSET lock_timeout = 0;\n"
          "SET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\n"
          "SET standard_conforming_strings = on;\n"
          "SELECT pg_catalog.set_config('search_path', '', false);\n"
          "SET check_function_bodies = false;\nSET xmloption = content;\n"
          "SET client_min_messages = warning;\nSET row_security = off;\n\n"
          "SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n")
        for t, cols in TABLES.items():
            w(f"--\n-- Name: {t}; Type: TABLE; Schema: public; Owner: alfresco\n--\n\n"
              f"CREATE TABLE public.{t} (\n"
              + ",\n".join(f"    {c} {ty}" for c, ty in cols)
              + f"\n);\n\n\nALTER TABLE public.{t} OWNER TO alfresco;\n\n")
            if t in SEQ_TABLES:
                w(f"--\n-- Name: {t}_seq; Type: SEQUENCE; Schema: public; Owner: alfresco\n"
                  f"--\n\nCREATE SEQUENCE public.{t}_seq\n    START WITH 1\n"
                  "    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;\n\n\n"
                  f"ALTER TABLE public.{t}_seq OWNER TO alfresco;\n\n")
        for t, cols in TABLES.items():
            w(f"--\n-- Data for Name: {t}; Type: TABLE DATA; Schema: public; "
              f"Owner: alfresco\n--\n\n"
              f"COPY public.{t} ({', '.join(c for c, _ in cols)}) FROM stdin;\n")
            f.writelines(db.rows[t])
            w("\\.\n\n\n")
        for t in SEQ_TABLES:
            w(f"--\n-- Name: {t}_seq; Type: SEQUENCE SET; Schema: public; Owner: alfresco\n"
              f"--\n\nSELECT pg_catalog.setval('public.{t}_seq', {db.c[t] - 1}, true);\n\n\n")
        for t in TABLES:
            key = "node_id, qname_id, list_index, locale_id" if t == "alf_node_properties" else "id"
            w(f"--\n-- Name: {t} {t}_pkey; Type: CONSTRAINT; Schema: public; Owner: alfresco\n"
              f"--\n\nALTER TABLE ONLY public.{t}\n    ADD CONSTRAINT {t}_pkey "
              f"PRIMARY KEY ({key});\n\n\n")
        w("--\n-- Name: idx_alf_conturl_cr; Type: INDEX; Schema: public; Owner: alfresco\n"
          "--\n\nCREATE UNIQUE INDEX idx_alf_conturl_cr ON public.alf_content_url "
          "USING btree (content_url_short, content_url_crc);\n\n\n"
          "--\n-- Name: idx_alf_node_txn; Type: INDEX; Schema: public; Owner: alfresco\n"
          "--\n\nCREATE INDEX idx_alf_node_txn ON public.alf_node "
          "USING btree (transaction_id);\n\n\n"
          f"-- Completed on {ts(completed)}\n\n"
          "--\n-- PostgreSQL database dump complete\n--\n\n")
    # pg_dump > file in a cron job: replace atomically so an interrupted run never
    # leaves half a dump behind.
    os.replace(tmp, path)
    set_mtime(path, completed)


def load_dump_rows(path: str) -> dict[str, list[str]]:
    """Pull the COPY blocks back out of the previous dump (the DDL is regenerated)."""
    with open(path, encoding="ascii", newline="") as f:
        text = f.read()
    rows: dict[str, list[str]] = {}
    pos = 0
    while True:
        i = text.find("\nCOPY public.", pos)
        if i < 0:
            break
        name_start = i + len("\nCOPY public.")
        name = text[name_start:text.index(" ", name_start)]
        body = text.index("\n", name_start) + 1
        end = text.index("\n\\.\n", body - 1) + 1
        rows[name] = text[body:end].splitlines(keepends=True)
        pos = end
    missing = set(TABLES) - set(rows)
    if missing:
        die(f"{path}: missing COPY blocks for {sorted(missing)}")
    return rows


# ----------------------------------------------------------------------------- solr

SOLR_FILES = [(".fdt", 0.30), (".fdx", 0.01), (".tim", 0.20), (".tip", 0.02),
              (".doc", 0.15), (".pos", 0.20), (".nvd", 0.03), (".dvd", 0.09),
              (".fnm", 0), (".si", 0), (".nvm", 0), (".dvm", 0)]


def b36(n: int) -> str:
    s = ""
    while True:
        n, d = divmod(n, 36)
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + s
        if n == 0:
            return s


def write_solr_snapshot(root: str, seed: int, solr: dict, ts: float) -> int:
    """Write the current segment set as a fresh snapshot.<yyyyMMddHHmmssSSS> directory
    and drop the previous snapshot, like Alfresco's nightly Solr backup with
    numberToKeep=1. Lucene segment files are immutable, so a segment keeps identical
    bytes across snapshots (regenerated from its name) while its path changes."""
    base = os.path.join(root, SOLR_REL)
    os.makedirs(base, exist_ok=True)
    name = "snapshot." + time.strftime("%Y%m%d%H%M%S", time.gmtime(ts)) + "000"
    snap = os.path.join(base, name)
    os.makedirs(snap)
    total = 0
    for seg, size in solr["segments"]:
        for ext, frac in SOLR_FILES:
            n = int(size * frac) if frac else 64 + zlib.crc32(f"{seg}{ext}".encode()) % 900
            r = random.Random(f"{seed}:solr:{seg}{ext}")
            p = os.path.join(snap, seg + ext)
            with open(p, "wb") as f:
                hdr = b"\x3f\xd7\x6c\x17" + f"Lucene50{ext}".encode()
                f.write(hdr)
                write_random(f, r, max(0, n - len(hdr)))
            set_mtime(p, ts)
            total += max(n, len(hdr))
    p = os.path.join(snap, f"segments_{b36(solr['gen'])}")
    with open(p, "wb") as f:
        body = b"\x3f\xd7\x6c\x17\x08segments" + b"".join(
            f"{seg}\x00Lucene62\x00{size}\n".encode() for seg, size in solr["segments"])
        f.write(body)
        total += len(body)
    set_mtime(p, ts)
    if solr.get("snapshot") and solr["snapshot"] != name:
        shutil.rmtree(os.path.join(base, solr["snapshot"]), ignore_errors=True)
    solr["snapshot"] = name
    return total


# ----------------------------------------------------------------------------- files

def write_doc(root: str, seed: int, rel: str, mime: int, size: int, ts: float) -> None:
    """New document content, seeded by its path so it is reproducible on its own."""
    r = random.Random(f"{seed}:content:{rel}")
    path = os.path.join(root, "contentstore", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    hdr = MIME[mime][3][:size]
    with open(path, "wb") as f:
        f.write(hdr)
        if MIME[mime][2]:
            write_random(f, r, size - len(hdr))
        else:
            f.write(text_bytes(r, text_pool(seed), size - len(hdr)))
    set_mtime(path, ts)


def new_rel(db: Db, ts: float) -> str:
    return f"{store_path(ts)}/{db.next_uuid()}.bin"


def tree_stats(root: str) -> tuple[int, int]:
    files = size = 0
    for d, _, fs in os.walk(root):
        for name in fs:
            files += 1
            size += os.path.getsize(os.path.join(d, name))
    return files, size


def save_state(root: str, state: dict) -> None:
    p = os.path.join(root, STATE_FILE)
    with open(p + ".tmp", "w") as f:
        json.dump(state, f, separators=(",", ":"))
    os.replace(p + ".tmp", p)
    # Fixed mtime keeps the whole tree reproducible; content changes every night anyway.
    set_mtime(p, day_start(dt.date.fromisoformat(state["day"])) + 23 * 3600 + 1800)


def load_state(root: str) -> dict:
    try:
        with open(os.path.join(root, STATE_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        die(f"{root}: no {STATE_FILE}; run `init` first")
        raise


def human(n: float) -> str:
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# ----------------------------------------------------------------------------- commands

def cmd_init(a) -> None:
    t0 = time.time()
    root = a.dir
    if os.path.exists(root) and os.listdir(root):
        die(f"{root} exists and is not empty")
    if a.docs < 1:
        die("--docs must be >= 1")
    os.makedirs(os.path.join(root, "db"), exist_ok=True)
    os.makedirs(os.path.join(root, "contentstore"), exist_ok=True)
    r = random.Random(f"{a.seed}:init")
    counters = {t: 1 for t in SEQ_TABLES}
    counters["uuid"] = 0
    db = Db(a.seed, counters)

    # Document timeline: denser towards the present (repositories grow), working hours.
    first = BASE_DAY - dt.timedelta(days=HISTORY_DAYS - 1)
    times = sorted(
        day_start(first + dt.timedelta(days=int(HISTORY_DAYS * math.sqrt(r.random()))))
        + r.randint(7 * 3600, 19 * 3600 - 1) + r.random()
        for _ in range(a.docs))

    # Bootstrap: company home, sites, data dictionary, user homes ...
    boot_ts = day_start(first) - 86400 + 3600
    db.new_txn(boot_ts)
    folders = [db.folder_node(r, boot_ts, 0)]
    for _ in range(40):
        folders.append(db.folder_node(r, boot_ts, r.choice(folders)))

    # Interleave docs with filler nodes so that after doc i the dump is ~(i+1)/docs of
    # the target size: self-calibrating, no per-row size estimate needed.
    target = a.dump_mb * MiB
    docs = []
    cs_bytes = 0
    sizes = doc_sizes(r, a.docs)
    for i, (ts, size) in enumerate(zip(times, sizes)):
        mime = pick_mime(r)
        rel = new_rel(db, ts)
        write_doc(root, a.seed, rel, mime, size, ts)
        cs_bytes += size
        cu = db.content_url(rel, size)
        cd = db.content_data(cu, mime)
        nid = db.doc_node(r, ts, r.choice(folders), cd, mime)
        docs.append([rel, size, mime, nid, cd, 0])
        goal = target * (i + 1) / a.docs
        while db.size < goal:
            db.filler_node(r, ts + r.random() * 60, folders)

    dump_ts = day_start(BASE_DAY) + 23 * 3600 + 1800
    render_dump(os.path.join(root, DUMP_REL), db, dump_ts)

    state = {"format": 1, "seed": a.seed, "day": BASE_DAY.isoformat(), "night": 0,
             "counters": db.c, "docs": docs, "folders": folders, "solr": None}
    solr_bytes = 0
    if a.solr:
        total = max(2 * MiB, a.docs * 4 * KiB)
        state["solr"] = {"gen": 7, "next_seg": 5, "snapshot": None,
                         "segments": [[f"_{b36(i)}", int(total * f)] for i, f in
                                      enumerate([0.6, 0.25, 0.1, 0.03, 0.02])]}
        solr_bytes = write_solr_snapshot(root, a.seed, state["solr"], dump_ts + 1200)
    save_state(root, state)
    files, size = tree_stats(root)
    print(f"gen_dirroot init: {files} files, {size} bytes ({human(size)}) "
          f"[contentstore {len(docs)} files {human(cs_bytes)}, dump "
          f"{human(os.path.getsize(os.path.join(root, DUMP_REL)))}, solr {human(solr_bytes)}] "
          f"in {time.time() - t0:.1f}s", file=sys.stderr)


def edit_version(r: random.Random, seed: int, old: bytes, mime: int) -> bytes:
    """Content of a new version of a document.
    Text: a few local edits (replace/insert/delete) and sometimes an appended paragraph,
    so most of the file is shared with the previous version.
    Binary: half are PDF-style incremental updates (old bytes + appended tail), half
    are re-exports with completely new bytes (e.g. a re-saved .docx zip)."""
    hdr = MIME[mime][3]
    if MIME[mime][2]:
        if r.random() < 0.5:
            return old + r.randbytes(max(2 * KiB, int(len(old) * r.uniform(0.01, 0.1))))
        n = max(len(hdr) + 1, int(len(old) * r.uniform(0.8, 1.2)))
        return hdr + r.randbytes(n - len(hdr))
    pool = text_pool(seed)
    buf = bytearray(old)
    for _ in range(r.randint(1, 6)):
        pos = r.randrange(len(buf) + 1)
        op = r.random()
        seg = text_bytes(r, pool, r.randint(20, 3000))
        if op < 0.4:
            buf[pos:pos + len(seg)] = seg
        elif op < 0.8:
            buf[pos:pos] = seg
        else:
            del buf[pos:pos + r.randint(20, 3000)]
    if r.random() < 0.3:
        buf += text_bytes(r, pool, r.randint(500, 20000))
    return bytes(buf)


def cmd_night(a) -> None:
    t0 = time.time()
    root = a.dir
    state = load_state(root)
    seed = state["seed"]
    night = state["night"] + 1
    day = dt.date.fromisoformat(state["day"]) + dt.timedelta(days=1)
    # --seed varies the night's activity; the init seed keeps uuids/content stable.
    r = random.Random(f"{seed}:{a.seed}:night:{night}")
    docs, folders = state["docs"], state["folders"]
    nd = len(docs)
    # Defaults: ~2% new documents, ~1% new versions, ~0.5% duplicate uploads, which with
    # the dump delta adds roughly 2-5% of the data per night.
    n_new = a.new if a.new is not None else max(1, round(nd * 0.02))
    n_ver = a.versions if a.versions is not None else max(1, round(nd * 0.01))
    n_dup = a.dups if a.dups is not None else max(1, round(nd * 0.005))
    n_touch = a.touch if a.touch is not None else max(3, round(nd * 0.01))

    dump_path = os.path.join(root, DUMP_REL)
    old_dump_size = os.path.getsize(dump_path)
    db = Db(seed, state["counters"], load_dump_rows(dump_path))
    written = 0
    ts_of = lambda: day_start(day) + r.randint(7 * 3600, 19 * 3600 - 1) + r.random()

    # 1. New uploads: new files in today's time directories, new rows everywhere.
    for ts, size in zip(sorted(ts_of() for _ in range(n_new)), doc_sizes(r, n_new)):
        mime = pick_mime(r)
        rel = new_rel(db, ts)
        write_doc(root, seed, rel, mime, size, ts)
        written += size
        cd = db.content_data(db.content_url(rel, size), mime)
        docs.append([rel, size, mime, db.doc_node(r, ts, r.choice(folders), cd, mime),
                     cd, 0])
        if r.random() < 0.3:
            db.filler_node(r, ts, folders)  # comments, ratings, a folder now and then

    # 2. New versions: Alfresco writes the new content to a NEW file with a new uuid and
    # keeps the old one (the version history node points at it).
    vers = r.sample(range(nd), min(n_ver, nd))
    upd_node: dict[str, tuple[float, str]] = {}    # node id -> (ts, modifier)
    upd_cd: dict[str, int] = {}                    # content_data id -> new content_url id
    upd_label: dict[str, str] = {}                 # node id -> new version label
    frozen: dict[str, int] = {}                    # content_data id -> version node id
    for i in vers:
        rel, size, mime, nid, cd, minor = docs[i]
        ts = ts_of()
        with open(os.path.join(root, "contentstore", rel), "rb") as f:
            old = f.read()
        data = edit_version(random.Random(f"{seed}:{a.seed}:ver:{night}:{i}"), seed, old, mime)
        new = new_rel(db, ts)
        p = os.path.join(root, "contentstore", new)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        set_mtime(p, ts)
        written += len(data)
        # Frozen copy of the old version in version2Store; its content_data row (added
        # below, once we have read the old row) points at the OLD content_url row.
        db.new_txn(ts)
        vnode = db.node(r, ts, T_VERSION, store=STORE_VERSION2)
        db.prop_str(vnode, Q_NAME, f"version-1.{minor}")
        db.prop_str(vnode, Q_VERSION_LABEL, f"1.{minor}")
        frozen[str(cd)] = vnode
        upd_cd[str(cd)] = db.content_url(new, len(data))
        upd_node[str(nid)] = (ts, r.choice(db.users))
        upd_label[str(nid)] = f"1.{minor + 1}"
        docs[i] = [new, len(data), mime, nid, cd, minor + 1]

    # 3. Duplicate uploads: byte-identical copies of existing files under new uuids.
    for i in r.sample(range(nd), min(n_dup, nd)):
        rel, size, mime = docs[i][:3]
        ts = ts_of()
        new = new_rel(db, ts)
        p = os.path.join(root, "contentstore", new)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        shutil.copyfile(os.path.join(root, "contentstore", rel), p)
        set_mtime(p, ts)
        written += size
        cd = db.content_data(db.content_url(new, size), mime)
        docs.append([new, size, mime, db.doc_node(r, ts, r.choice(folders), cd, mime), cd, 0])

    # 4. A few unrelated rows change (someone retitles a folder, edits a profile ...).
    touched = [str(n) for n in r.sample(range(1, db.c["alf_node"]), min(n_touch, db.c["alf_node"] - 1))
               if str(n) not in upd_node]
    for n in touched:
        upd_node[n] = (ts_of(), r.choice(db.users))
    retitle = set(touched[::2])

    # Apply updates: take the old rows out of their place, append the new versions.
    db.new_txn(day_start(day) + 19 * 3600)
    old_cd_rows = db.take("alf_content_data", set(upd_cd))
    for k, cu in upd_cd.items():
        f = old_cd_rows[k][0].rstrip("\n").split("\t")
        db.prop_long(frozen[k], Q_CONTENT, db.content_data(int(f[2]), int(f[3])), actual=21)
        f[1], f[2] = str(int(f[1]) + 1), str(cu)
        db._add("alf_content_data", "\t".join(f) + "\n")
    old_nodes = db.take("alf_node", set(upd_node))
    for k, (ts, who) in upd_node.items():
        f = old_nodes[k][0].rstrip("\n").split("\t")
        f[1], f[4], f[10], f[11] = str(int(f[1]) + 1), str(db.txn), who, iso_ms(ts)
        db._add("alf_node", "\t".join(f) + "\n")
    want = {k: str(Q_VERSION_LABEL) for k in upd_label}
    want.update({k: str(Q_TITLE) for k in retitle})
    old_props = db.take("alf_node_properties", set(want), lambda f: f[9] == want[f[0]])
    for k, rows in old_props.items():
        for row in rows:
            f = row.rstrip("\n").split("\t")
            f[7] = upd_label[k] if k in upd_label else db.phrase(r, 1, 4).title()
            db._add("alf_node_properties", "\t".join(f) + "\n")

    dump_ts = day_start(day) + 23 * 3600 + 1800
    render_dump(dump_path, db, dump_ts)
    solr_note = ""
    if state.get("solr"):
        s = state["solr"]
        # New docs go into a new small segment; every third night small segments merge.
        s["segments"].append([f"_{b36(s['next_seg'])}", (n_new + n_ver + n_dup) * 4 * KiB + 64 * KiB])
        s["next_seg"] += 1
        if night % 3 == 0:
            big = max(x[1] for x in s["segments"])
            small = [x for x in s["segments"] if x[1] < big * 0.1]
            if len(small) > 1:
                s["segments"] = [x for x in s["segments"] if x not in small]
                s["segments"].append([f"_{b36(s['next_seg'])}", int(sum(x[1] for x in small) * 0.9)])
                s["next_seg"] += 1
        s["gen"] += 1
        solr_bytes = write_solr_snapshot(root, seed, s, dump_ts + 1200)
        solr_note = f", solr snapshot {human(solr_bytes)}"

    state.update(day=day.isoformat(), night=night, counters=db.c, docs=docs, folders=folders)
    save_state(root, state)
    files, size = tree_stats(root)
    new_dump = os.path.getsize(dump_path)
    print(f"gen_dirroot night {night} ({day}): +{n_new} new, {len(vers)} versions, "
          f"{min(n_dup, nd)} dups, {len(touched)} touched rows; {human(written)} new content"
          f", dump {human(old_dump_size)} -> {human(new_dump)}{solr_note}; tree now {files} "
          f"files, {size} bytes ({human(size)}) in {time.time() - t0:.1f}s", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init", help="create a new dir.root")
    i.add_argument("dir")
    i.add_argument("--seed", type=int, default=1)
    i.add_argument("--docs", type=int, default=1000, help="documents in the contentstore")
    i.add_argument("--dump-mb", type=int, default=100, help="approximate SQL dump size, MiB")
    i.add_argument("--solr", action="store_true", help="also write a Solr backup snapshot")
    n = sub.add_parser("night", help="simulate one night of activity")
    n.add_argument("dir")
    n.add_argument("--seed", type=int, default=0, help="varies the activity (default 0)")
    n.add_argument("--new", type=int, help="new uploads (default 2%% of docs)")
    n.add_argument("--versions", type=int, help="new versions (default 1%% of docs)")
    n.add_argument("--dups", type=int, help="duplicate uploads (default 0.5%% of docs)")
    n.add_argument("--touch", type=int, help="unrelated node rows updated (default 1%% of docs)")
    a = p.parse_args()
    (cmd_init if a.cmd == "init" else cmd_night)(a)


if __name__ == "__main__":
    main()
