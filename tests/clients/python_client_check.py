"""A small program against the Python client that openapi-python-client
generates from the gateway's openapi.json (tests/clients/run.mjs generates
it, type-checks this file with mypy --strict, then runs it against the
built Worker): create an invoice, check it, pay it with a payout, and handle
a 422. Exits non-zero on anything unexpected."""

import os
import sys

from lightning_fallback_client import AuthenticatedClient
from lightning_fallback_client.api.payouts import create_payout, get_payout
from lightning_fallback_client.api.receive import check_invoice, create_invoice
from lightning_fallback_client.models import (
    CheckInvoiceResponse,
    CreateInvoiceRequest,
    CreateInvoiceResponse,
    CreatePayoutRequest,
    Error,
    FailedPayout,
    Payout,
)


def main() -> int:
    base = os.environ["GATEWAY_URL"]
    payout_key = os.environ["PAYOUT_KEY"]
    run = os.environ.get("RUN_ID", "1")
    # check-invoice takes the invoice key optionally; a client without one
    # still needs a token for the generated AuthenticatedClient.
    shop = AuthenticatedClient(base_url=base, token=os.environ["INVOICE_KEY"])
    payer = AuthenticatedClient(base_url=base, token=payout_key)

    created = create_invoice.sync_detailed(
        client=shop, body=CreateInvoiceRequest(amount=1000, description="order 1")
    )
    if not isinstance(created.parsed, CreateInvoiceResponse):
        print(f"create-invoice: {created.status_code} {created.content!r}")
        return 1
    invoice = created.parsed

    checked = check_invoice.sync_detailed(client=shop, payment_hash=invoice.payment_hash)
    if not isinstance(checked.parsed, CheckInvoiceResponse):
        print(f"check-invoice: {checked.status_code} {checked.content!r}")
        return 1
    print(f"invoice {invoice.payment_hash[:12]}… is {checked.parsed.status}")

    paid = create_payout.sync_detailed(
        client=payer,
        body=CreatePayoutRequest(destination=invoice.payment_request),
        idempotency_key=f"python-client-{run}",
    )
    if not isinstance(paid.parsed, Payout):
        print(f"payout: {paid.status_code} {paid.content!r}")
        return 1
    print(f"payout {paid.parsed.id} is {paid.parsed.status}")
    again = get_payout.sync_detailed(client=payer, id=paid.parsed.id)
    if not isinstance(again.parsed, Payout) or again.parsed.id != paid.parsed.id:
        print(f"get payout: {again.status_code} {again.content!r}")
        return 1

    # A 422: the amount does not match the invoice's. The answer is an Error
    # (nothing stored) or a FailedPayout (stored, already failed).
    wrong = create_payout.sync_detailed(
        client=payer,
        body=CreatePayoutRequest(destination=invoice.payment_request, amount_sat=7),
        idempotency_key=f"python-client-422-{run}",
    )
    match wrong.parsed:
        case FailedPayout() as failed:
            print(f"422: stored and failed: {failed.error.message}")
        case Error() as err if wrong.status_code == 422:
            print(f"422 {err.error.code}: {err.error.message}")
        case other:
            print(f"expected a 422, got {wrong.status_code}: {other!r}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
