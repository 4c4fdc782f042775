"""A look at an LMDB data file before LMDB maps it.

LMDB trusts its file: one cut short is mapped all the same, and reading a page past its end
kills the process with SIGBUS; no error, no name. So before an environment is opened, its
two meta pages are read here with plain file reads: both must be LMDB's (magic, version,
page flags), and the file must hold every page that the newer one (the one LMDB would use)
says was written, and the roots it names. Anything else is `StoreDamaged`, naming the file
and what is wrong, and the environment is never mapped.

Layout (LMDB 0.9, 64-bit; mdb.c): a page starts with a 16-byte header (page number u64,
pad u16, flags u16, ...). A meta page's body: magic u32, version u32, address u64,
map size u64, two databases of 48 bytes (pad u32 - the free database's is the page size -,
flags u16, depth u16, branch, leaf, overflow pages and entries u64, root u64), last page u64,
transaction id u64.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from persistence.log import StoreDamaged

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
P_META = 0x08
NO_ROOT = 2**64 - 1
PAGE_HEADER = struct.Struct("<QHH")  # then 4 bytes this check does not need
HEADER_BYTES = 16
META_HEAD = struct.Struct("<IIQQ")
DATABASE = struct.Struct("<IHHQQQQQ")
META_TAIL = struct.Struct("<QQ")
DATABASES_AT = HEADER_BYTES + META_HEAD.size
TAIL_AT = DATABASES_AT + 2 * DATABASE.size
META_BYTES = TAIL_AT + META_TAIL.size
PAGE_BYTES_MIN, PAGE_BYTES_MAX = 512, 65536


@dataclass(frozen=True)
class Meta:
    page_bytes: int
    roots: tuple[int, int]
    last_page: int
    txn_id: int


def check_data_file(path: Path) -> None:
    """Raise StoreDamaged unless `path` (an LMDB data file) is whole, as far as its meta pages
    tell; a missing file is left to LMDB (it creates it)."""
    if not path.exists():
        return
    size = path.stat().st_size
    with path.open("rb") as file:
        first = _meta(path, 0, file.read(PAGE_BYTES_MAX), size)
        file.seek(first.page_bytes)
        second = _meta(path, 1, file.read(first.page_bytes), size)
    newest = max(first, second, key=lambda meta: meta.txn_id)
    needed = (newest.last_page + 1) * newest.page_bytes
    if size < needed:
        raise StoreDamaged(f"{path}: cut short: {size:,} bytes, but its newest meta page "
                           f"(transaction {newest.txn_id}) names pages up to "
                           f"{newest.last_page} ({needed:,} bytes): restore this shard "
                           "from a backup (docs/OPERATIONS.md)")
    for root in newest.roots:
        if root != NO_ROOT and root > newest.last_page:
            raise StoreDamaged(f"{path}: its meta page names root page {root}, beyond its "
                               f"last page {newest.last_page}: restore this shard from a "
                               "backup (docs/OPERATIONS.md)")


def _meta(path: Path, index: int, page: bytes, size: int) -> Meta:
    where = f"{path}: meta page {index}"
    if len(page) < META_BYTES:
        raise StoreDamaged(f"{where} is missing ({size:,} bytes in all): the file is cut "
                           "short or is not an LMDB data file")
    number, _, flags = PAGE_HEADER.unpack_from(page, 0)
    magic, version, _, _ = META_HEAD.unpack_from(page, HEADER_BYTES)
    if number != index or not flags & P_META or magic != MAGIC or version != DATA_VERSION:
        raise StoreDamaged(f"{where} is not LMDB's (page {number}, flags {flags:#x}, magic "
                           f"{magic:#x}, version {version}): the file is damaged")
    databases = [DATABASE.unpack_from(page, DATABASES_AT + i * DATABASE.size) for i in range(2)]
    last_page, txn_id = META_TAIL.unpack_from(page, TAIL_AT)
    page_bytes = databases[0][0]
    if not PAGE_BYTES_MIN <= page_bytes <= PAGE_BYTES_MAX or page_bytes & (page_bytes - 1):
        raise StoreDamaged(f"{where} names a page size of {page_bytes}: the file is damaged")
    return Meta(page_bytes, (databases[0][7], databases[1][7]), last_page, txn_id)
