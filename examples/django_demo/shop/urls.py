from django.urls import path

from orders import views

urlpatterns = [
    path("health", views.health),
    path("products", views.products),
    path("orders", views.create_order),
    path("orders/<int:order_id>/invoice", views.invoice),
]
