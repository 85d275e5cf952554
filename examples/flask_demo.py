"""A small Flask shop service that crashes on rare data (the quickstart).

    python examples/flask_demo.py [--port 5000] [--rates-url URL]

Routes:
    GET  /health                   the process, the time and a request id
    GET  /products                 the catalogue, from the database
    POST /orders                   {"sku": ..., "quantity": ...}: one transaction
    GET  /orders/<id>/invoice      the order priced, in ?currency=EUR (the rate
                                   comes from an exchange-rate service over HTTP)

The database is SQLite (recordings/shop.sqlite3) unless DATABASE_URL names a
PostgreSQL server (postgresql://... or key=value), reached through psycopg2.
(Not a *_DSN variable: a recording redacts variables whose names look like
secrets, and the replay would see "<redacted by retrace>" in it.) The schema
and a catalogue are created at startup if missing. The catalogue holds one
legacy product whose price is NULL: invoicing an order of it fails with a
TypeError, which Flask logs with its traceback and answers with a 500.

Served by werkzeug's threaded development server; Ctrl-C (SIGINT) or SIGTERM
stops it cleanly.
The app object also runs under gunicorn: `gunicorn --preload flask_demo:app`.

Record it with the installed hook (`retrace install` once):
    RETRACE_RECORDING=recordings/flask.retrace python examples/flask_demo.py
while examples/load.py sends requests; then `retrace replay recordings/flask.retrace`.
"""
import argparse
import logging
import os
import signal
import sqlite3
import time
import uuid

import requests
from flask import Flask, abort, g, jsonify, request

HERE = os.path.dirname(os.path.abspath(__file__))
SQLITE_PATH = os.environ.get("RETRACE_DEMO_SQLITE",
                             os.path.join(os.path.dirname(HERE), "recordings", "shop.sqlite3"))
DSN = os.environ.get("DATABASE_URL")
RATES_URL = os.environ.get("RETRACE_DEMO_RATES_URL", "http://127.0.0.1:5001/rates")

CATALOGUE = [("MUG-01", "Mug", 1250), ("TEE-02", "T-shirt", 2400),
             ("CAP-03", "Cap", 1800), ("GIFT-00", "Gift card (legacy)", None)]

logging.basicConfig(level=logging.INFO,
                    format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("shop")
app = Flask("flask_demo")


# -- the database: SQLite, or PostgreSQL through psycopg2 ---------------------

def connect():
    if DSN:
        import psycopg2
        return psycopg2.connect(DSN)
    return sqlite3.connect(SQLITE_PATH)


def query(sql, args=()):
    """Run sql (with ? placeholders) on this request's connection."""
    if "db" not in g:
        g.db = connect()
    cur = g.db.cursor()
    cur.execute(sql.replace("?", "%s") if DSN else sql, args)
    return cur


@app.teardown_appcontext
def close_db(exc):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def create_schema():
    db = connect()
    cur = db.cursor()
    serial = "SERIAL" if DSN else "INTEGER"
    cur.execute("CREATE TABLE IF NOT EXISTS products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "price_cents INTEGER, stock INTEGER NOT NULL DEFAULT 100)")
    cur.execute(f"CREATE TABLE IF NOT EXISTS orders (id {serial} PRIMARY KEY, "
                "sku TEXT NOT NULL REFERENCES products(sku), quantity INTEGER NOT NULL, "
                "created TEXT NOT NULL)")
    insert = ("INSERT INTO products (sku, name, price_cents) VALUES (?, ?, ?) "
              "ON CONFLICT DO NOTHING")
    cur.executemany(insert.replace("?", "%s") if DSN else insert, CATALOGUE)
    db.commit()
    db.close()


# -- routes --------------------------------------------------------------------

@app.after_request
def log_response(response):
    """Every answer goes to the log, so a replayed log shows the responses too."""
    body = response.get_data(as_text=True).strip() if response.is_json else response.mimetype
    log.info("%s %s -> %s %s", request.method, request.full_path.rstrip("?"),
             response.status_code, body)
    return response


@app.get("/health")
def health():
    return jsonify(status="ok", pid=os.getpid(), time=time.time(), request_id=str(uuid.uuid4()))


@app.get("/products")
def products():
    rows = query("SELECT sku, name, price_cents, stock FROM products ORDER BY sku").fetchall()
    return jsonify([dict(zip(("sku", "name", "price_cents", "stock"), row)) for row in rows])


@app.post("/orders")
def create_order():
    data = request.get_json()
    sku, quantity = data["sku"], int(data["quantity"])
    stock = query("SELECT stock FROM products WHERE sku = ?", (sku,)).fetchone()
    if stock is None:
        abort(404, f"no product {sku}")
    if stock[0] < quantity:
        abort(409, f"only {stock[0]} of {sku} left")
    # One transaction: the order and the stock change land together.
    created = time.strftime("%Y-%m-%dT%H:%M:%S")
    if DSN:
        order_id = query("INSERT INTO orders (sku, quantity, created) VALUES (?, ?, ?) "
                         "RETURNING id", (sku, quantity, created)).fetchone()[0]
    else:
        order_id = query("INSERT INTO orders (sku, quantity, created) VALUES (?, ?, ?)",
                         (sku, quantity, created)).lastrowid
    query("UPDATE products SET stock = stock - ? WHERE sku = ?", (quantity, sku))
    g.db.commit()
    log.info("order %s: %d x %s", order_id, quantity, sku)
    return jsonify(id=order_id, sku=sku, quantity=quantity, created=created), 201


@app.get("/orders/<int:order_id>/invoice")
def invoice(order_id):
    row = query("SELECT o.sku, o.quantity, p.price_cents FROM orders o "
                "JOIN products p ON p.sku = o.sku WHERE o.id = ?", (order_id,)).fetchone()
    if row is None:
        abort(404, f"no order {order_id}")
    sku, quantity, price_cents = row
    currency = request.args.get("currency", "USD")
    rate = 1.0
    if currency != "USD":
        answer = requests.get(RATES_URL, params={"base": "USD"}, timeout=5)
        answer.raise_for_status()
        rate = answer.json()[currency]
    subtotal = price_cents * quantity   # a legacy product has no price: TypeError
    total = round(subtotal * rate / 100, 2)
    log.info("invoice %s: %s %s", order_id, total, currency)
    return jsonify(order=order_id, sku=sku, quantity=quantity, currency=currency, rate=rate,
                   total=total)


if not DSN:
    os.makedirs(os.path.dirname(SQLITE_PATH), exist_ok=True)
create_schema()     # here, not in main(): gunicorn imports the app


def stop(signum, frame):
    raise KeyboardInterrupt     # the development server stops on Ctrl-C


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    log.info("database: %s", "PostgreSQL" if DSN else SQLITE_PATH)
    signal.signal(signal.SIGTERM, stop)
    app.run(args.host, args.port, threaded=True)
    log.info("server stopped")


if __name__ == "__main__":
    main()
