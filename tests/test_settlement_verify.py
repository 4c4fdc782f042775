"""`payswitch settlement verify`: a closed window's report derived again from `wal export`
alone agrees with what the switch published and signed; an altered report, or an export
whose payments were altered, does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import RunningSwitch


def payswitch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_a_window_is_verified_from_the_export_alone(switch: RunningSwitch, tmp_path: Path
                                                    ) -> None:
    client, url = switch.client, switch.url
    for bank in ("bank-a", "bank-b", "bank-c"):
        client.post(url + "/v1/participants", json={"id": bank, "name": bank,
                                                    "ledgers": ["USD"]})
        client.post(url + f"/v1/participants/{bank}/funds", json={
            "id": f"f-{bank}", "ledger": "USD", "direction": "in", "amount": 100_000})
        client.put(url + f"/v1/participants/{bank}/ledgers/USD/net-debit-cap",
                   json={"net_debit_cap": 100_000})
        client.post(url + "/v1/accounts", json={"id": f"w-{bank}", "ledger": "USD", "code": 1,
                                                "owner": bank})
    for n in range(30):
        payer, payee = ("a", "b", "c")[n % 3], ("b", "c", "a")[n % 3]
        answer = client.post(url + "/v1/payments", json={
            "id": f"p{n}", "payer_account_id": f"w-bank-{payer}",
            "payee_account_id": f"w-bank-{payee}", "amount": 10 + n, "ledger": "USD"})
        assert answer.status_code == 201, answer.text
    assert client.post(url + "/v1/settlement-windows/close",
                       json={"ledger": "USD"}).json()["closed"] == "USD.1"
    report = client.get(url + "/v1/settlement-windows/USD.1/report").json()
    public_key = client.get(url + "/v1/hub/public-key").json()["public_key"]
    data = Path(switch.settings.data.dir)
    switch.stop()
    exported = payswitch("wal", "export", data)
    assert exported.returncode == 0, exported.stderr
    export = tmp_path / "export.jsonl"
    export.write_text(exported.stdout)
    published = tmp_path / "report.json"
    published.write_bytes(orjson.dumps(report))

    def verify(export_file: Path, report_file: Path) -> subprocess.CompletedProcess[str]:
        return payswitch("settlement", "verify", "--export", export_file, "--report",
                         report_file, "--public-key", public_key, "--window", "USD.1")

    checked = verify(export, published)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified" in checked.stderr
    derived = orjson.loads(checked.stdout)
    assert derived["payments"] == 30 and derived["merkle_root"] == report["merkle_root"]
    # a report with a participant's net changed: refused
    altered = {**report, "participants": [{**row, "net": row["net"] + 1} if i == 0 else row
                                          for i, row in enumerate(report["participants"])]}
    (tmp_path / "altered.json").write_bytes(orjson.dumps(altered))
    assert verify(export, tmp_path / "altered.json").returncode == 1
    # an export whose payment was altered: its root differs, and the signature fails
    lines = export.read_text().splitlines()
    tampered = [line.replace('"user_data":"p7;0"', '"user_data":"p77;0"') for line in lines]
    assert tampered != lines
    (tmp_path / "tampered.jsonl").write_text("\n".join(tampered) + "\n")
    refused = verify(tmp_path / "tampered.jsonl", published)
    assert refused.returncode == 1 and "merkle_root" in refused.stderr
