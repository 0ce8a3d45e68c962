import cors from 'cors'
import express from 'express'
import { saikuAuth, type KeyStore } from '@saiku/express'

export function createApp(store: KeyStore): express.Express {
  const app = express()
  // First: cors() ends a preflight with 204 before saikuAuth could ask it for a key.
  app.use(
    cors({
      origin: ['https://app.example.com'], // exact origins; never a reflected Origin
      allowedHeaders: ['Authorization', 'Content-Type'],
      exposedHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'], // readable from scripts
      maxAge: 600,
    }),
  )
  app.use(saikuAuth(store))
  app.get('/me/tenant', (req, res) => {
    res.json(req.saiku!.tenant)
  })
  return app
}
