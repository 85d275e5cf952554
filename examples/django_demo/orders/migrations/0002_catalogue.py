"""The catalogue, with one legacy product that has no price."""
from django.db import migrations

CATALOGUE = [("MUG-01", "Mug", 1250), ("TEE-02", "T-shirt", 2400),
             ("CAP-03", "Cap", 1800), ("GIFT-00", "Gift card (legacy)", None)]


def add_catalogue(apps, schema_editor):
    Product = apps.get_model("orders", "Product")
    Product.objects.bulk_create(Product(sku=sku, name=name, price_cents=price)
                                for sku, name, price in CATALOGUE)


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [migrations.RunPython(add_catalogue, migrations.RunPython.noop)]
