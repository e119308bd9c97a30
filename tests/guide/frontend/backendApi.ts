// src/services/backendApi.ts
import axios from 'axios'

const API_BASE_URL = 'http://localhost:8000'

export class BackendApiService {
  private token: string | null = null

  setToken(token: string) {
    this.token = token
  }

  private getHeaders() {
    return {
      'Content-Type': 'application/json',
      ...(this.token && { Authorization: `Bearer ${this.token}` })
    }
  }

  // 认�
  async register(username: string, email: string, password: string) {
    const response = await axios.post(`${API_BASE_URL}/api/auth/register`, {
      username,
      email,
      password
    })
    this.token = response.data.access_token
    return response.data
  }

  async login(username: string, password: string) {
    const response = await axios.post(`${API_BASE_URL}/api/auth/login`, {
      username,
      password
    })
    this.token = response.data.access_token
    return response.data
  }

  async getCurrentUser() {
    const response = await axios.get(`${API_BASE_URL}/api/auth/me`, {
      headers: this.getHeaders()
    })
    return response.data
  }

  // 对�
  async getConversations() {
    const response = await axios.get(`${API_BASE_URL}/api/conversations`, {
      headers: this.getHeaders()
    })
    return response.data
  }

  async createConversation(conversation: any) {
    const response = await axios.post(
      `${API_BASE_URL}/api/conversations`,
      conversation,
      { headers: this.getHeaders() }
    )
    return response.data
  }

  async updateConversation(id: string, conversation: any) {
    const response = await axios.put(
      `${API_BASE_URL}/api/conversations/${id}`,
      conversation,
      { headers: this.getHeaders() }
    )
    return response.data
  }

  async deleteConversation(id: string) {
    const response = await axios.delete(
      `${API_BASE_URL}/api/conversations/${id}`,
      { headers: this.getHeaders() }
    )
    return response.data
  }

  // �天
  async sendMessage(messages: any[], options: any = {}) {
    const response = await axios.post(
      `${API_BASE_URL}/api/chat`,
      {
        messages,
        model: options.model || 'gpt-3.5-turbo',
        temperature: options.temperature || 0.7,
        max_tokens: options.max_tokens || 2048,
        stream: options.stream || false
      },
      { headers: this.getHeaders() }
    )
    return response.data
  }

  // 统计
  async getStats() {
    const response = await axios.get(`${API_BASE_URL}/api/stats`, {
      headers: this.getHeaders()
    })
    return response.data
  }
}

export const backendApi = new BackendApiService()
