"""The web benchmark's Flask service, served by gunicorn (bench/web.py).

    GET /orders/<id>/invoice?currency=EUR

Per request: one PostgreSQL query through psycopg2, one outbound HTTP call
to the rate service, one log line. The same work as the invoice view of
examples/django_demo, whose tables it reads (`manage.py migrate` creates
them). DATABASE_URL names the database, RETRACE_DEMO_RATES_URL the rate
service. Each process keeps one connection in autocommit mode, as a
connection pool would.
"""
import logging
import os

import psycopg2
import requests
from flask import Flask, abort, jsonify, request

RATES_URL = os.environ["RETRACE_DEMO_RATES_URL"]

logging.basicConfig(level=logging.INFO,
                    format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("shop")
app = Flask("web_flask")
connection = None


def query(sql, args):
    global connection
    if connection is None:      # in the worker, not in gunicorn's master
        connection = psycopg2.connect(os.environ["DATABASE_URL"])
        connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


@app.get("/orders/<int:order_id>/invoice")
def invoice(order_id):
    row = query("SELECT p.sku, o.quantity, p.price_cents FROM orders_order o "
                "JOIN orders_product p ON p.sku = o.product_id WHERE o.id = %s", (order_id,))
    if row is None:
        abort(404)
    sku, quantity, price_cents = row
    currency = request.args.get("currency", "USD")
    answer = requests.get(RATES_URL, params={"base": "USD"}, timeout=5)
    answer.raise_for_status()
    rate = answer.json()[currency]
    total = round(price_cents * quantity * rate / 100, 2)
    log.info("invoice %s: %s %s", order_id, total, currency)
    return jsonify(order=order_id, sku=sku, quantity=quantity, currency=currency, rate=rate,
                   total=total)
