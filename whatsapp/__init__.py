"""WhatsApp Cloud API service that answers each customer with an agent."""
