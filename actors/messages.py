"""The commands the router sends to a shard, and the shape of a shard's reply.

A call carries a batch of commands as one orjson blob: a list of lists whose first element
is the op. The shard replies with [REPLY_OK, [reply per command]] or, when the batch could not
be committed, [REPLY_FAILED, code, message] and nothing of the batch is applied.

    ["account", [id, ledger, code, owner, flags, user_data], limits row | None]
                                              -> [result, account row, limits row | None]
    ["limits", account id, limits row]        -> [result, account row | None, limits row | None]
    ["commit", transfer fields, roles, remote result, attempt(, remote balancing rules,
     a post's or void's pending transfer row as claimed)] -> [result, transfer row | None]
    ["reserve", transfer fields, roles, attempt]             -> result
                   (a balancing transfer: [ok or in_flight, amount held, its rules here])
    ["reserve_chain", chain key, attempt, [[fields, roles, member index], ...]]
        -> [[result, stored row | None, amount held | None, balancing rules,
             a post's or void's fields as stored | None (its claim taken here)], ...]
    ["commit_chain", chain key, attempt, [parts, as above], [verdict per member elsewhere],
     [[amount asked, balancing rules elsewhere | None, post's or void's fields | None]
      per member]]
        -> [[result per member], [timestamps] | None, [amounts] | None,
            [post's or void's fields | None per member] | None, [[member, row], ...]]
    ["resolve_chain", chain key, attempt]  -> [[timestamps], [amounts], [fields]] | None
    ["finalize", transfer id, attempt, post|void|hold, commit ts, amount (0: as held),
     fields (a chain's post or void) | None]  -> applied (bool)
    ["resolve", transfer id, attempt]          -> [post|hold|void, commit ts, transfer row]
    ["claim", post-or-void fields, attempt]    -> [result, pending transfer row | None]
    ["finalize_claim", pending id, post-or-void id, attempt, its row | None] -> applied
    ["settle", pending id, post, amount, post-or-void row]   -> applied (bool)
    ["pending_status", pending id]             -> [status, amount posted, row] | None
    ["held", min_age_ms] -> [[pending id, roles], ...]   parts of pending transfers
    ["claims", min_age_ms] -> [[pending id, post-or-void id, attempt, chain key, member], ...]
                              claims in doubt (chain key "" when not a chain's)
    ["get_account", id] -> [row, limits row | None] | None
    ["get_transfer", id] -> [row, pending status | None] | None
    ["account_transfers", id, limit, before] -> [[rows newest first], next cursor | None]
    ["in_doubt", min_age_ms] -> [[transfer row, roles, attempt], ...] reserved that long ago
    ["totals"] -> {ledger: [debits_posted, credits_posted, debits_pending, credits_pending]}
    ["status"] -> {...}

Transfer fields are [id, debit_account_id, credit_account_id, amount, ledger, code, user_data,
flags, pending_id, timeout_ms]: a transfer row without its timestamp, which the shard assigns.
"""

from __future__ import annotations

OP_ACCOUNT = "account"
OP_COMMIT = "commit"
OP_RESERVE = "reserve"
OP_RESERVE_CHAIN = "reserve_chain"
OP_COMMIT_CHAIN = "commit_chain"
OP_RESOLVE_CHAIN = "resolve_chain"
OP_FINALIZE = "finalize"
OP_RESOLVE = "resolve"
OP_GET_ACCOUNT = "get_account"
OP_GET_TRANSFER = "get_transfer"
OP_ACCOUNT_TRANSFERS = "account_transfers"
OP_IN_DOUBT = "in_doubt"
OP_LIMITS = "limits"
OP_CLAIM = "claim"
OP_FINALIZE_CLAIM = "finalize_claim"
OP_SETTLE = "settle"
OP_PENDING_STATUS = "pending_status"
OP_HELD = "held"
OP_CLAIMS = "claims"
OP_TOTALS = "totals"
OP_STATUS = "status"

REPLY_OK = 0
REPLY_FAILED = 1

# Codes of a failed call (the whole batch), as the router maps them to HTTP.
FAILED_STORAGE_FULL = "storage_full"
FAILED_INTERNAL = "internal_error"
