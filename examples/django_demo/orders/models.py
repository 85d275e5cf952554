from django.db import models


class Product(models.Model):
    sku = models.CharField(primary_key=True, max_length=20)
    name = models.CharField(max_length=100)
    price_cents = models.IntegerField(null=True)    # legacy products have none
    stock = models.IntegerField(default=100)


class Order(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)
