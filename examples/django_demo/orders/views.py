"""The shop's API (the same as examples/flask_demo.py's, so examples/load.py
drives either): the catalogue, orders placed in a transaction, and invoices
priced in another currency with a rate fetched over HTTP. Invoicing an order
of the legacy product, whose price is NULL, crashes."""
import json
import logging
import os
import time
import uuid

import requests
from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .models import Order, Product

log = logging.getLogger("shop")


@require_GET
def health(request):
    return JsonResponse({"status": "ok", "pid": os.getpid(), "time": time.time(),
                         "request_id": str(uuid.uuid4())})


@require_GET
def products(request):
    rows = Product.objects.order_by("sku").values("sku", "name", "price_cents", "stock")
    return JsonResponse(list(rows), safe=False)


@require_POST
def create_order(request):
    data = json.loads(request.body)
    quantity = int(data["quantity"])
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(sku=data["sku"]).first()
        if product is None:
            return JsonResponse({"error": f"no product {data['sku']}"}, status=404)
        if product.stock < quantity:
            return JsonResponse({"error": f"only {product.stock} left"}, status=409)
        product.stock -= quantity
        product.save(update_fields=["stock"])
        order = Order.objects.create(product=product, quantity=quantity)
    log.info("order %s: %d x %s", order.id, quantity, product.sku)
    return JsonResponse({"id": order.id, "sku": product.sku, "quantity": quantity,
                         "created": order.created.isoformat(timespec="seconds")}, status=201)


@require_GET
def invoice(request, order_id):
    order = Order.objects.select_related("product").filter(id=order_id).first()
    if order is None:
        return JsonResponse({"error": f"no order {order_id}"}, status=404)
    currency = request.GET.get("currency", "USD")
    rate = 1.0
    if currency != "USD":
        answer = requests.get(settings.RATES_URL, params={"base": "USD"}, timeout=5)
        answer.raise_for_status()
        rate = answer.json()[currency]
    subtotal = order.product.price_cents * order.quantity   # a legacy product: TypeError
    total = round(subtotal * rate / 100, 2)
    log.info("invoice %s: %s %s", order.id, total, currency)
    return JsonResponse({"order": order.id, "sku": order.product.sku, "quantity": order.quantity,
                         "currency": currency, "rate": rate, "total": total})
